"""The fake API server keeps the rules the reconcilers' contracts rest on, as kube-apiserver does."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube

from elasticsan_snapshotter.kubernetes.api import Conflict
from elasticsan_snapshotter.kubernetes.resources import VOLUME_SNAPSHOT_CONTENT as VSC


def content(kube: FakeKube, finalizers: list[str] | None = None) -> dict[str, object]:
    return kube.seed(
        VSC, {"metadata": {"name": "c", "finalizers": finalizers or []}, "spec": {"driver": "d"}}
    )


async def test_a_stale_resource_version_is_a_conflict_and_a_fresh_one_applies() -> None:
    kube = FakeKube()
    seeded = content(kube)
    stale = seeded["metadata"]["resourceVersion"]  # type: ignore[index]
    await kube.patch(VSC, "c", {"metadata": {"labels": {"a": "1"}, "resourceVersion": stale}})
    with pytest.raises(Conflict):
        await kube.patch(VSC, "c", {"metadata": {"labels": {"a": "2"}, "resourceVersion": stale}})


async def test_status_and_the_main_resource_are_written_apart() -> None:
    kube = FakeKube()
    content(kube)
    await kube.patch(VSC, "c", {"status": {"readyToUse": True}, "metadata": {"labels": {"x": "y"}}})
    body = kube.get_object(VSC, "c")
    assert body is not None
    assert "status" not in body
    assert body["metadata"]["labels"] == {"x": "y"}
    await kube.patch(
        VSC, "c", {"status": {"readyToUse": True}, "metadata": {"labels": {"x": "z"}}}, subresource="status"
    )
    body = kube.get_object(VSC, "c")
    assert body is not None
    assert body["status"] == {"readyToUse": True}
    assert body["metadata"]["labels"] == {"x": "y"}


async def test_finalizers_hold_a_deleted_object_until_the_last_one_goes() -> None:
    kube = FakeKube()
    content(kube, ["a", "b"])
    await kube.delete(VSC, "c")
    body = kube.get_object(VSC, "c")
    assert body is not None
    assert body["metadata"]["deletionTimestamp"]
    assert await kube.remove_finalizer(VSC, body, "a")
    assert kube.get_object(VSC, "c") is not None
    # ``body`` is stale now (index 1 holds nothing): the client re-reads and retries.
    assert await kube.remove_finalizer(VSC, body, "b")
    assert kube.get_object(VSC, "c") is None
    assert [e.type for e in kube.take_watch()][-1] == "DELETED"


async def test_a_json_patch_whose_test_fails_is_a_conflict() -> None:
    kube = FakeKube()
    content(kube, ["a"])
    ops = [{"op": "test", "path": "/metadata/finalizers/0", "value": "b"}]
    with pytest.raises(Conflict):
        await kube.patch(VSC, "c", ops, content_type="application/json-patch+json")


async def test_spec_changes_bump_the_generation_and_no_op_writes_keep_the_version() -> None:
    kube = FakeKube()
    content(kube)
    before = kube.get_object(VSC, "c")
    await kube.patch(VSC, "c", {"spec": {"driver": "d"}})
    assert kube.get_object(VSC, "c") == before
    await kube.patch(VSC, "c", {"spec": {"driver": "e"}})
    after = kube.get_object(VSC, "c")
    assert after is not None
    assert after["metadata"]["generation"] == 2
