"""A watch event older than what the content store holds must not undo the operator's own writes."""

from __future__ import annotations

import copy
from typing import cast

import pytest
from kube_recorder import RecordingApi, reconciler_parts

from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.resources import VOLUME_SNAPSHOT_CONTENT
from elasticsan_snapshotter.kubernetes.snapshotter import ContentReconciler
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
DRIVER = "elasticsan.csi.example.com"
SAN = ElasticSanId(SUB, "rg", "san1")
VOLUME = SAN.volume_group("vg1").volume("vol1")


def _content() -> Body:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "snapcontent-1", "uid": "c-1", "finalizers": []},
        "spec": {
            "driver": DRIVER,
            "deletionPolicy": "Delete",
            "source": {"volumeHandle": VOLUME.arm_id},
            "volumeSnapshotRef": {
                "name": "snap",
                "namespace": "ns",
                "uid": "0f7c2b1e-1111-2222-3333-444455556666",
            },
        },
    }


def test_an_older_body_never_replaces_a_newer_one() -> None:
    store = Store()
    fresh = _content() | {"status": {"readyToUse": True}}
    fresh["metadata"] = fresh["metadata"] | {"resourceVersion": "12"}
    stale = _content()
    stale["metadata"] = stale["metadata"] | {"resourceVersion": "11"}
    store.apply("MODIFIED", fresh)
    store.apply("MODIFIED", stale)
    held = store.get("snapcontent-1")
    assert held is not None
    assert held["metadata"]["resourceVersion"] == "12"
    newer = copy.deepcopy(fresh)
    newer["metadata"]["resourceVersion"] = "13"
    store.apply("MODIFIED", newer)
    assert store.get("snapcontent-1") == newer
    store.apply("DELETED", stale)  # a deletion always counts
    assert store.get("snapcontent-1") is None


async def test_a_late_watch_event_does_not_make_a_second_write() -> None:
    api = RecordingApi()
    parts = reconciler_parts(api, VOLUME, DRIVER)
    azure = parts["azure"]
    contents = Store()
    kube = cast(KubeApi, api)
    reconciler = ContentReconciler(
        **parts,
        contents=contents,
        volumes=PersistentVolumes(kube),
    )
    created = api.put(VOLUME_SNAPSHOT_CONTENT, _content())
    contents.apply("ADDED", created)
    await reconciler.reconcile("snapcontent-1")
    writes = api.count("patch")
    assert writes >= 1
    held = contents.get("snapcontent-1")
    assert held is not None
    assert (held.get("status") or {}).get("readyToUse") is True
    # The watch now delivers the events of every version, oldest first: all but the last are
    # older than the body the store took from the last PATCH response.
    late = [copy.deepcopy(body) for body in api.history]
    assert len(late) == writes + 1
    for event_body in late:
        contents.apply("MODIFIED", event_body)
        await reconciler.reconcile("snapcontent-1")
    assert api.count("patch") == writes
    assert azure.calls["create_snapshot"] == 1
