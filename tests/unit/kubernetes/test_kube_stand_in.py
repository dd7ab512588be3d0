"""The in-memory API the unit tests share behaves as the API server does where reconcilers depend on it."""

from __future__ import annotations

import pytest

from elasticsan_snapshotter.domain.errors import AlreadyExists, NotFound
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME, VOLUME_SNAPSHOT
from kube_stand_in import KubeStandIn, merged

pytestmark = pytest.mark.unit


def test_a_merge_patch_removes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert merged(target, {"a": {"b": None, "d": {"e": None, "f": 3}}, "l": [3]}) == {
        "a": {"c": 2, "d": {"f": 3}},
        "l": [3],
    }


async def test_create_gives_a_uid_and_refuses_an_existing_name() -> None:
    api = KubeStandIn()
    made = await api.create(VOLUME_SNAPSHOT, {"metadata": {"name": "s"}}, "ns")
    assert made["metadata"]["namespace"] == "ns"
    assert made["metadata"]["uid"]
    assert made["metadata"]["resourceVersion"]
    with pytest.raises(AlreadyExists):
        await api.create(VOLUME_SNAPSHOT, {"metadata": {"name": "s"}}, "ns")
    assert api.created == [("volumesnapshots", "s")]
    assert api.count("create") == 2


async def test_lists_select_by_namespace_and_label() -> None:
    api = KubeStandIn()
    await api.create(VOLUME_SNAPSHOT, {"metadata": {"name": "a", "labels": {"k": "v"}}}, "one")
    await api.create(VOLUME_SNAPSHOT, {"metadata": {"name": "b"}}, "two")
    assert [b["metadata"]["name"] for b in await api.list(VOLUME_SNAPSHOT)] == ["a", "b"]
    assert [b["metadata"]["name"] for b in await api.list(VOLUME_SNAPSHOT, "two")] == ["b"]
    assert [b["metadata"]["name"] for b in await api.list(VOLUME_SNAPSHOT, label_selector="k=v")] == ["a"]


async def test_a_patch_makes_a_new_version_and_reads_are_copies() -> None:
    api = KubeStandIn()
    stored = api.put(PERSISTENT_VOLUME, {"metadata": {"name": "pv", "finalizers": ["f", "g"]}, "spec": {}})
    updated = await api.patch(PERSISTENT_VOLUME, "pv", {"spec": {"x": 1}}, subresource="status")
    assert int(updated["metadata"]["resourceVersion"]) > int(stored["metadata"]["resourceVersion"])
    read = await api.get(PERSISTENT_VOLUME, "pv")
    assert read == updated
    assert read is not api.objects[("persistentvolumes", "", "pv")]
    assert [v["spec"] for v in api.history] == [{}, {"x": 1}]
    assert api.count("patch", "persistentvolumes") == 1
    with pytest.raises(NotFound):
        await api.patch(PERSISTENT_VOLUME, "missing", {})


async def test_finalizers_come_off_and_deletes_of_missing_objects_succeed() -> None:
    api = KubeStandIn()
    held = api.put(PERSISTENT_VOLUME, {"metadata": {"name": "pv", "finalizers": ["f", "g"]}})
    stored = api.objects[("persistentvolumes", "", "pv")]
    assert await api.remove_finalizer(PERSISTENT_VOLUME, held, "f") is True
    assert await api.remove_finalizer(PERSISTENT_VOLUME, held, "f") is False
    assert stored["metadata"]["finalizers"] == ["g"]  # the stored object is the same dict, updated
    await api.delete(PERSISTENT_VOLUME, "pv")
    await api.delete(PERSISTENT_VOLUME, "pv")
    assert api.deleted == [("persistentvolumes", "pv")]
