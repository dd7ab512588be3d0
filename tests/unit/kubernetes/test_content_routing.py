"""Contents of the PVs' CSI driver: group members to their handler, imports of Elastic SAN snapshots to
the content handler, everything else to nobody.

A backup tool restoring a group member's snapshot (Velero) writes a pre-provisioned content with the
member's driver, ``iscsi.csi.k8s.io``, and no group annotation; it is served exactly like a
pre-provisioned content of our own driver (readiness, errors, restores, deletion by policy).
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import FakeKube
from harness import (
    GROUP,
    NAMESPACE,
    SUBSCRIPTION,
    Operator,
    claim,
    seeded_azure,
    storage_class,
)

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.errors import NotFound
from elasticsan_snapshotter.domain.groups import GROUP_DRIVER_NAME
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_GROUP_MEMBER_HANDLE,
    FIN_CONTENT_BOUND,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)

pytestmark = pytest.mark.unit

VOLUME = GROUP.volume("vol1")
SNAPSHOT = GROUP.snapshot("member-0")


def _content(driver: str, source: Body, annotations: dict[str, str] | None = None) -> Body:
    return {
        "metadata": {"name": "imported", "annotations": dict(annotations or {})},
        "spec": {"driver": driver, "deletionPolicy": "Retain", "source": source},
    }


ROUTES: list[tuple[str, Body, tuple[bool, bool]]] = [
    ("ours, dynamic", _content(DRIVER_NAME, {"volumeHandle": VOLUME.handle(SUBSCRIPTION)}), (True, False)),
    ("ours, imported", _content(DRIVER_NAME, {"snapshotHandle": SNAPSHOT.arm_id}), (True, False)),
    (
        "iSCSI, portable handle",
        _content(GROUP_DRIVER_NAME, {"snapshotHandle": SNAPSHOT.handle(SUBSCRIPTION)}),
        (True, False),
    ),
    ("iSCSI, ARM ID", _content(GROUP_DRIVER_NAME, {"snapshotHandle": SNAPSHOT.arm_id}), (True, False)),
    (
        "iSCSI, short handle",
        _content(GROUP_DRIVER_NAME, {"snapshotHandle": "rg#san1#group1#s"}),
        (True, False),
    ),
    (
        "iSCSI, group member",
        _content(GROUP_DRIVER_NAME, {"volumeHandle": VOLUME.arm_id}, {ANN_GROUP_MEMBER_HANDLE: "g-1"}),
        (False, True),
    ),
    (
        "iSCSI, restored with the member's annotations",
        _content(GROUP_DRIVER_NAME, {"snapshotHandle": SNAPSHOT.arm_id}, {ANN_GROUP_MEMBER_HANDLE: "g-1"}),
        (True, False),
    ),
    ("iSCSI, volume source", _content(GROUP_DRIVER_NAME, {"volumeHandle": VOLUME.arm_id}), (False, False)),
    (
        "iSCSI, managed-disk handle",
        _content(GROUP_DRIVER_NAME, {"snapshotHandle": "rg#disk1"}),
        (False, False),
    ),
    (
        "iSCSI, foreign handle",
        _content(GROUP_DRIVER_NAME, {"snapshotHandle": "vol-0abc/snap"}),
        (False, False),
    ),
    ("other driver", _content("other.csi.example.com", {"snapshotHandle": SNAPSHOT.arm_id}), (False, False)),
]


@pytest.mark.parametrize(("content", "handlers"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_each_content_has_at_most_one_handler(content: Body, handlers: tuple[bool, bool]) -> None:
    runtime = Operator(FakeKube(), seeded_azure()).runtime
    assert runtime.content_reconciler is not None
    assert runtime.group_member_reconciler is not None
    got = (runtime.content_reconciler.is_ours(content), runtime.group_member_reconciler.is_ours(content))
    assert got == handlers


def _imported(kube: FakeKube, policy: str, *, bound_to: Body | None = None, handle: str = "") -> str:
    """A pre-provisioned content as a restore of a group member's snapshot writes it."""
    body = _content(GROUP_DRIVER_NAME, {"snapshotHandle": handle or SNAPSHOT.handle(SUBSCRIPTION)})
    body["spec"]["deletionPolicy"] = policy
    body["metadata"]["finalizers"] = [FIN_CONTENT_BOUND]
    if bound_to is not None:
        meta = bound_to["metadata"]
        ref = {"kind": "VolumeSnapshot", "name": meta["name"], "namespace": NAMESPACE, "uid": meta["uid"]}
        body["spec"]["volumeSnapshotRef"] = ref
        kube.patch_status_direct(
            VOLUME_SNAPSHOT,
            meta["name"],
            {"boundVolumeSnapshotContentName": "imported", "readyToUse": False},
            NAMESPACE,
        )
    kube.seed(VOLUME_SNAPSHOT_CONTENT, body)
    return "imported"


def _seeded() -> tuple[FakeKube, InMemoryAzure]:
    kube, azure = FakeKube(), seeded_azure()
    azure.add_snapshot(SNAPSHOT, VOLUME)
    return kube, azure


def _status(kube: FakeKube, name: str) -> dict[str, Any]:
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    return dict(body.get("status") or {})


async def test_an_imported_member_snapshot_becomes_ready_with_its_size() -> None:
    kube, azure = _seeded()
    name = _imported(kube, "Retain")
    await Operator(kube, azure).settle()
    status = _status(kube, name)
    assert status["readyToUse"] is True
    assert status["snapshotHandle"] == SNAPSHOT.handle(SUBSCRIPTION)
    assert status["restoreSize"] == 10 * 1024**3
    assert status["creationTime"] > 0


async def test_an_imported_handle_of_a_missing_snapshot_is_a_clear_error() -> None:
    kube, azure = FakeKube(), seeded_azure()
    name = _imported(kube, "Retain")
    await Operator(kube, azure).settle(rounds=3)
    status = _status(kube, name)
    assert status.get("readyToUse") is not True
    assert SNAPSHOT.name in status["error"]["message"]


@pytest.mark.parametrize(("policy", "kept"), [("Delete", False), ("Retain", True)])
async def test_deleting_an_imported_content_honours_its_policy(policy: str, kept: bool) -> None:
    kube, azure = _seeded()
    name = _imported(kube, policy)
    operator = Operator(kube, azure)
    await operator.settle()
    kube.delete_direct(VOLUME_SNAPSHOT_CONTENT, name)  # unbound: deleted at once, as the sidecar does
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    if kept:
        assert (await azure.get_snapshot(SNAPSHOT)).id == SNAPSHOT
    else:
        with pytest.raises(NotFound):
            await azure.get_snapshot(SNAPSHOT)


def _restore(kube: FakeKube, *, handle: str = "") -> Body:
    """A VolumeSnapshot bound to an imported content, and a claim restoring it."""
    storage_class(kube)
    vs = kube.seed(
        VOLUME_SNAPSHOT,
        {
            "metadata": {"name": "restored", "namespace": NAMESPACE},
            "spec": {"source": {"volumeSnapshotContentName": "imported"}},
        },
    )
    _imported(kube, "Retain", bound_to=vs, handle=handle)
    restored = claim(kube, "data-restored")
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "restored"}
    kube.patch_direct(PERSISTENT_VOLUME_CLAIM, "data-restored", {"spec": {"dataSource": source}}, NAMESPACE)
    return restored


async def test_a_claim_is_restored_from_a_snapshot_bound_to_an_imported_content() -> None:
    kube, azure = _seeded()
    restored = _restore(kube)
    await Operator(kube, azure).settle()
    pv = kube.get_object(PERSISTENT_VOLUME, f"pvc-{restored['metadata']['uid']}")
    assert pv is not None, [e["message"] for e in kube.events_about("data-restored")]
    volumes = [v for v in await azure.list_volumes(GROUP) if v.id != VOLUME]
    assert [v.source for v in volumes] == [SNAPSHOT]


async def test_a_content_of_the_iscsi_driver_naming_no_elastic_san_snapshot_is_no_restore_source() -> None:
    kube, azure = _seeded()
    restored = _restore(kube, handle="rg#disk1")  # a managed-disk handle: not a group member's
    # Made ready by someone else: the operator neither served it nor restores from it.
    kube.patch_status_direct(
        VOLUME_SNAPSHOT_CONTENT, "imported", {"snapshotHandle": "rg#disk1", "readyToUse": True}
    )
    await Operator(kube, azure).settle(rounds=3)
    assert kube.get_object(PERSISTENT_VOLUME, f"pvc-{restored['metadata']['uid']}") is None
    messages = [e["message"] for e in kube.events_about("data-restored", "ProvisioningFailed")]
    assert any(f"handled by driver '{GROUP_DRIVER_NAME}'" in m for m in messages), messages
