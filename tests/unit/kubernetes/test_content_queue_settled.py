"""Settled contents (ready, nothing to remove, not deleted) are stored but not queued.

At start-up every listed content would otherwise pass through the queue ahead of the new
ones; a reconcile of a settled content ends at its first check.
"""

from __future__ import annotations

import copy

import pytest
from fake_kube import FakeKube
from harness import GROUP, SUBSCRIPTION, Operator, seeded_azure

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import ANN_BEING_CREATED, VOLUME_SNAPSHOT_CONTENT
from elasticsan_snapshotter.kubernetes.snapshotter import has_work

pytestmark = pytest.mark.unit

HANDLE = GROUP.snapshot("snapshot-x").handle(SUBSCRIPTION)


def _content(name: str, *, ready: bool = True, **meta: object) -> Body:
    body: Body = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name, "uid": f"uid-{name}", **meta},
        "spec": {
            "driver": DRIVER_NAME,
            "deletionPolicy": "Retain",
            "source": {"volumeHandle": GROUP.volume("vol1").handle(SUBSCRIPTION)},
            "volumeSnapshotRef": {"name": name, "namespace": "ns", "uid": f"vs-{name}"},
        },
    }
    if ready:
        body["status"] = {"readyToUse": True, "snapshotHandle": HANDLE, "creationTime": 1, "restoreSize": 1}
    return body


def _imported(name: str, status_handle: str | None) -> Body:
    body = _content(name, ready=status_handle is not None)
    body["spec"]["source"] = {"snapshotHandle": HANDLE}
    body["spec"].pop("volumeSnapshotRef")
    if status_handle is not None:
        body["status"]["snapshotHandle"] = status_handle
    return body


def test_a_listed_ready_content_is_stored_and_only_contents_with_work_are_queued() -> None:
    operator = Operator(FakeKube(), seeded_azure())
    runtime = operator.runtime
    for i in range(100):
        runtime.on_content(None, _content(f"ready-{i:03d}"))
    with_work = [
        _content("new", ready=False),
        _content("annotated", annotations={ANN_BEING_CREATED: "yes"}),
        _content("deleting", deletionTimestamp="2026-01-01T00:00:00Z"),
        _imported("import-pending", None),
        _imported("import-other-handle", HANDLE + "-other"),
    ]
    for body in with_work:
        runtime.on_content(None, body)
    runtime.on_content(None, _imported("import-done", HANDLE))
    assert len(runtime.contents) == 106
    assert runtime.queues["contents"].pending == len(with_work)
    assert [has_work(b) for b in with_work] == [True] * len(with_work)


async def test_a_settled_content_needs_no_reconcile() -> None:
    """The rule has_work applies: reconciling what it skips makes no request at all."""
    kube, azure = FakeKube(), seeded_azure()
    operator = Operator(kube, azure)
    settled = [_content("ready"), _imported("import-done", HANDLE)]
    for body in settled:
        stored = kube.seed(VOLUME_SNAPSHOT_CONTENT, copy.deepcopy(body))
        kube.patch_status_direct(VOLUME_SNAPSHOT_CONTENT, body["metadata"]["name"], body.get("status"))
        operator.runtime.contents.apply(
            None, kube.get_object(VOLUME_SNAPSHOT_CONTENT, stored["metadata"]["name"]) or {}
        )
    azure.reset_calls()
    kube.requests.clear()
    assert operator.runtime.content_reconciler is not None
    for body in settled:
        assert not has_work(body)
        assert await operator.runtime.content_reconciler.reconcile(body["metadata"]["name"]) is None
    assert kube.requests == []
    assert sum(azure.calls.values()) == 0
