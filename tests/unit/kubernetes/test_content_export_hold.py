"""A running export holds its source's data, not only its VolumeSnapshot object.

With a Delete-policy class, snapshot-controller deletes the content as soon as the
VolumeSnapshot is deleted (whatever finalizers hold the VolumeSnapshot), so the
content's own deletion path must wait while an export still reads the snapshot.
"""

from __future__ import annotations

from fake_kube import FakeKube
from harness import (
    GROUP,
    NAMESPACE,
    Operator,
    delete_snapshot_as_snapshot_controller,
    dynamic_content,
    export,
    seeded_azure,
    volume_snapshot,
)

from elasticsan_snapshotter.kubernetes.resources import (
    SNAPSHOT_EXPORT,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)

VOLUME = GROUP.volume("vol1")


async def test_deleting_the_source_of_a_running_export_waits_for_the_export() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    content = dynamic_content(kube, vs, VOLUME)["metadata"]["name"]
    operator = Operator(kube, azure)
    await operator.settle()
    export(kube, volumeSnapshotName="snap")
    await operator.settle()
    running = kube.get_object(SNAPSHOT_EXPORT, "copy", NAMESPACE)
    assert running is not None
    assert running["status"]["phase"] == "Exporting"

    kube.delete_direct(VOLUME_SNAPSHOT, "snap", NAMESPACE)
    delete_snapshot_as_snapshot_controller(kube, content)
    await operator.settle(rounds=5)
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, content) is not None
    assert azure.call_count("delete_snapshot") == 0
    assert len(await azure.list_snapshots(GROUP)) == 1
    (event,) = kube.events_about(content, "WaitingForExport")
    assert f"{NAMESPACE}/copy" in event["message"]

    azure.advance(31.0)  # the copy finishes
    await operator.settle()
    done = kube.get_object(SNAPSHOT_EXPORT, "copy", NAMESPACE)
    assert done is not None
    assert done["status"]["phase"] == "Succeeded"
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, content) is None
    assert kube.get_object(VOLUME_SNAPSHOT, "snap", NAMESPACE) is None
    assert await azure.list_snapshots(GROUP) == []


async def test_without_the_export_crd_a_deleted_content_deletes_its_snapshot() -> None:
    """A cluster without the export CRD answers its list with 404: no export can read the snapshot."""
    kube, azure = FakeKube(), seeded_azure()
    kube.fail_when = lambda r: (404, "NotFound") if r.plural == SNAPSHOT_EXPORT.plural else None
    vs = volume_snapshot(kube, "snap")
    content = dynamic_content(kube, vs, VOLUME)["metadata"]["name"]
    operator = Operator(kube, azure)
    await operator.settle()
    assert len(await azure.list_snapshots(GROUP)) == 1

    kube.delete_direct(VOLUME_SNAPSHOT, "snap", NAMESPACE)
    delete_snapshot_as_snapshot_controller(kube, content)
    await operator.settle()
    assert any(r.plural == SNAPSHOT_EXPORT.plural for r in kube.requests)  # it did look for exports
    assert azure.call_count("delete_snapshot") == 1
    assert await azure.list_snapshots(GROUP) == []
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, content) is None
    assert kube.events_about(content, "NotFound") == []
