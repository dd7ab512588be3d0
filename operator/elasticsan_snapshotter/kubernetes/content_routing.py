"""Which handler serves a VolumeSnapshotContent of the PVs' CSI driver (the group driver name).

Two kinds of such contents are the operator's, told apart by their source (immutable):

* a group member: snapshot-controller creates it from a group content with a ``volumeHandle``
  source and the group annotation from the start; group_members.py serves it, and the group owns
  its Azure snapshot;
* a pre-provisioned content whose ``snapshotHandle`` names an Elastic SAN snapshot: a backup tool
  restoring a member's snapshot keeps the member's driver (Velero does, and keeps the annotations
  it backed up), and a user may import a snapshot the same way; snapshotter.py serves it like a
  pre-provisioned content of our own driver. snapshot-controller never makes a member with a
  ``snapshotHandle`` source, so such a content is an import even when it carries the annotation.

Every other content of that driver (a handle naming no Elastic SAN snapshot, a ``volumeHandle``
source without the annotation) is someone else's.
"""

from __future__ import annotations

from elasticsan_snapshotter.domain.identity import SnapshotId, try_parse
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import ANN_GROUP_MEMBER_HANDLE


def is_group_member(content: Body, group_driver_name: str) -> bool:
    spec = content.get("spec") or {}
    annotations = (content.get("metadata") or {}).get("annotations") or {}
    return (
        spec.get("driver") == group_driver_name
        and bool(annotations.get(ANN_GROUP_MEMBER_HANDLE))
        and not (spec.get("source") or {}).get("snapshotHandle")
    )


def imported_snapshot(content: Body, group_driver_name: str, subscription: str) -> SnapshotId | None:
    """The Elastic SAN snapshot a pre-provisioned content of the PVs' driver names, if it names one."""
    spec = content.get("spec") or {}
    handle = (spec.get("source") or {}).get("snapshotHandle")
    if spec.get("driver") != group_driver_name or not handle:
        return None
    return try_parse(SnapshotId.parse, str(handle), subscription)


__all__ = ["imported_snapshot", "is_group_member"]
