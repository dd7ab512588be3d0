"""Which handler serves a VolumeSnapshotContent of the PVs' CSI driver (the group driver name).

Two kinds of such contents are the operator's. A group member: snapshot-controller creates it
from a group content, carrying the group annotation from the start; group_members.py serves it
and the group owns its Azure snapshot. A pre-provisioned content naming an Elastic SAN snapshot
without that annotation: a backup tool restoring a member's snapshot keeps the member's driver
(Velero does), and a user may import a snapshot the same way; snapshotter.py serves it like a
pre-provisioned content of our own driver. Every other content of that driver (a
``volumeHandle`` source, a handle naming no Elastic SAN snapshot) is someone else's.
"""

from __future__ import annotations

from elasticsan_snapshotter.domain.identity import SnapshotId, try_parse
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import ANN_GROUP_MEMBER_HANDLE


def is_group_member(content: Body, group_driver_name: str) -> bool:
    annotations = (content.get("metadata") or {}).get("annotations") or {}
    return (content.get("spec") or {}).get("driver") == group_driver_name and bool(
        annotations.get(ANN_GROUP_MEMBER_HANDLE)
    )


def imported_snapshot(content: Body, group_driver_name: str, subscription: str) -> SnapshotId | None:
    """The Elastic SAN snapshot a pre-provisioned, non-member content of the PVs' driver names."""
    spec = content.get("spec") or {}
    if spec.get("driver") != group_driver_name or ANN_GROUP_MEMBER_HANDLE in (
        (content.get("metadata") or {}).get("annotations") or {}
    ):
        return None
    handle = (spec.get("source") or {}).get("snapshotHandle")
    if not handle:
        return None
    return try_parse(SnapshotId.parse, str(handle), subscription)


__all__ = ["imported_snapshot", "is_group_member"]
