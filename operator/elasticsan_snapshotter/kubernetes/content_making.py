"""The VolumeSnapshotContent of a dynamic VolumeSnapshot, made by the operator itself.

snapshot-controller makes a dynamic snapshot's content only after it has put finalizers on the
VolumeSnapshot, read the source PV from the API and patched the claim; in a burst its queue sets
the pace (a thousand at once on two cores: half of the contents 20 s or more after their
VolumeSnapshots). When a
content of the fixed name ``snapcontent-<VolumeSnapshot uid>`` already exists and points back to
the VolumeSnapshot (name, namespace and uid, ``spec.source.volumeHandle`` set), snapshot-
controller v8 binds it as its own and skips its create, the PV read, the content finalizer patch,
the "CreatingSnapshot" Event and one status update (``syncUnreadySnapshot``). A create that meets
ours answers AlreadyExists, which it treats as its own success.

So, for a VolumeSnapshot of our class that snapshot-controller has not bound yet, the operator
writes the body snapshot-controller would write, plus the bound finalizer that it would add next.
It carries no being-created annotation: a made content is itself the mark that a create may be in
flight until its status says ready or failed (``snapshotter.create_in_flight``), so the snapshot
costs two writes, the create and the status.
It makes no content where snapshot-controller would add more than this: a class with snapshotter
secrets (deletion-secret annotations), a claim being deleted, a PV not bound to the claim.

Made contents carry ``ANN_CONTENT_MADE``. snapshot-controller never deletes a content whose
VolumeSnapshot is gone, so when a VolumeSnapshot is deleted before snapshot-controller has seen
the content made for it, the operator releases that content itself (``snapshotter.py``).

snapshot-controller v8.6.0 can lose a content's updates when its own create meets ours before its
watch has shown ours (it caches its own body, without a resourceVersion, and then rejects every
newer one): it has bound the VolumeSnapshot to the content but never passes on its readiness. A
made content that stays ready for the take-up timeout while its VolumeSnapshot, bound to it, is
not (``waiting_on_snapshot_controller``) is handed back: the operator deletes its Elastic SAN snapshot
and the content, and snapshot-controller, seeing the content gone, makes its own
(docs/architecture.md, "Contents made by the operator").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_CONTENT_MADE,
    FIN_CONTENT_BOUND,
    SNAPSHOT_GROUP,
)
from elasticsan_snapshotter.kubernetes.stores import Store

CONTENT_NAME_PREFIX = "snapcontent-"
"""snapshot-controller's name for a dynamic snapshot's content (utils.GetDynamicSnapshotContentNameForSnapshot)."""

SNAPSHOTTER_SECRET_PREFIX = "csi.storage.k8s.io/snapshotter-secret-"


def content_name(snapshot_uid: str) -> str:
    return CONTENT_NAME_PREFIX + snapshot_uid


def is_made(content: Body) -> bool:
    """Whether the operator made this content (rather than snapshot-controller)."""
    return ANN_CONTENT_MADE in ((content.get("metadata") or {}).get("annotations") or {})


def snapshot_key(content: Body) -> str:
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    return f"{ref.get('namespace')}/{ref.get('name')}"


def snapshot_seen(content: Body, snapshots: Store) -> bool:
    """Whether the watch holds the VolumeSnapshot this content points to (same uid)."""
    held = snapshots.get(snapshot_key(content))
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    return held is not None and held["metadata"].get("uid") == ref.get("uid")


def waiting_on_snapshot_controller(content: Body, snapshot: Body | None) -> bool:
    """Whether ``snapshot`` is bound to this ready content but does not say ready itself.

    snapshot-controller copies a content's readiness into the VolumeSnapshot it is bound to
    within moments, or within its queue's lag in a burst; for as long as this holds, it has not.
    """
    if snapshot is None or not (content.get("status") or {}).get("readyToUse"):
        return False
    meta = snapshot.get("metadata") or {}
    status = snapshot.get("status") or {}
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    return (
        meta.get("uid") == ref.get("uid")
        and not meta.get("deletionTimestamp")
        and status.get("boundVolumeSnapshotContentName") == (content.get("metadata") or {}).get("name")
        and not status.get("readyToUse")
    )


def _claim_matches(pv: Body, claim: Body) -> bool:
    """snapshot-controller's isVolumeBoundToClaim: the PV's claimRef names this claim."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    meta = claim.get("metadata") or {}
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def dynamic_content(snapshot: Body, snapshot_class: Mapping[str, Any], claim: Body, pv: Body) -> Body | None:
    """The content to make for ``snapshot``, or None where snapshot-controller must make it.

    ``snapshot`` names ``snapshot_class`` (already known to be of our driver) and the Bound
    ``claim``, whose PV is ``pv`` (a CSI volume).
    """
    meta = snapshot.get("metadata") or {}
    status = snapshot.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("boundVolumeSnapshotContentName"):
        return None
    if (claim.get("metadata") or {}).get("deletionTimestamp") or not _claim_matches(pv, claim):
        return None
    parameters = snapshot_class.get("parameters") or {}
    if any(str(key).startswith(SNAPSHOTTER_SECRET_PREFIX) for key in parameters):
        return None
    pv_spec = pv.get("spec") or {}
    volume_handle = (pv_spec.get("csi") or {}).get("volumeHandle")
    if not volume_handle or not meta.get("uid"):
        return None
    spec: dict[str, Any] = {
        "volumeSnapshotRef": {
            "apiVersion": f"{SNAPSHOT_GROUP}/v1",
            "kind": "VolumeSnapshot",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "source": {"volumeHandle": volume_handle},
        "volumeSnapshotClassName": (snapshot_class.get("metadata") or {}).get("name"),
        "deletionPolicy": snapshot_class.get("deletionPolicy"),
        "driver": snapshot_class.get("driver"),
    }
    if pv_spec.get("volumeMode"):
        # snapshot-controller's --prevent-volume-mode-conversion (on by default) records it;
        # restores compare it with the new claim's mode.
        spec["sourceVolumeMode"] = pv_spec["volumeMode"]
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {
            "name": content_name(meta["uid"]),
            "finalizers": [FIN_CONTENT_BOUND],
            "annotations": {ANN_CONTENT_MADE: "yes"},
        },
        "spec": spec,
    }
