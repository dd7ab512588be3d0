"""A running export holds its source's data, not only its VolumeSnapshot object.

With a Delete-policy class, snapshot-controller deletes the content as soon as the
VolumeSnapshot is deleted (whatever finalizers hold the VolumeSnapshot), so the
content's own deletion path must wait while an export still reads the snapshot.
"""

from __future__ import annotations

from fake_kube import FakeKube, Request
from harness import (
    GROUP,
    NAMESPACE,
    delete_snapshot_as_snapshot_controller,
    export,
    seeded_azure,
    snapshot_taken,
)

from elasticsan_snapshotter.kubernetes.resources import (
    SNAPSHOT_EXPORT,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)

VOLUME = GROUP.volume("vol1")


async def test_deleting_the_source_of_a_running_export_waits_for_the_export() -> None:
    kube, azure = FakeKube(), seeded_azure()
    operator, content = await snapshot_taken(kube, azure)
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


async def test_deletion_goes_on_where_the_export_resource_is_not_installed() -> None:
    kube, azure = FakeKube(), seeded_azure()
    operator, content = await snapshot_taken(kube, azure)

    def no_export_crd(request: Request) -> tuple[int, str] | None:
        return (404, "NotFound") if request.plural == SNAPSHOT_EXPORT.plural else None

    kube.fail_when = no_export_crd
    delete_snapshot_as_snapshot_controller(kube, content)
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, content) is None
    assert await azure.list_snapshots(GROUP) == []
