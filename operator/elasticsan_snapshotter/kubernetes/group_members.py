"""Member VolumeSnapshotContents of a group: kept ready, released on deletion, never deleted in Azure.

snapshot-controller creates one VolumeSnapshot and one content per member from the group
content's ``volumeSnapshotInfoList``; the contents carry the group driver name and the
``groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle`` annotation. The group content owns
the Azure snapshots: a member content only reports readiness, and when it is deleted its
finalizer comes off without any Azure call, whatever its deletion policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.domain.identity import SnapshotId
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.content_routing import is_group_member
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_BEING_DELETED,
    FIN_CONTENT_BOUND,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.stores import Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

MISSING_RECHECK = 300.0


@dataclass(kw_only=True, eq=False)
class GroupMemberReconciler(Reconciler):
    group_driver_name: str
    members: Store

    def is_ours(self, body: Body) -> bool:
        return is_group_member(body, self.group_driver_name)

    async def reconcile(self, name: str) -> Outcome:
        body = self.members.get(name)
        if body is None or not self.is_ours(body):
            return None
        meta, spec = body["metadata"], body.get("spec") or {}
        if meta.get("deletionTimestamp"):
            bound = bool((spec.get("volumeSnapshotRef") or {}).get("uid"))
            if ANN_BEING_DELETED in (meta.get("annotations") or {}) or not bound:
                await self.api.remove_finalizer(VOLUME_SNAPSHOT_CONTENT, body, FIN_CONTENT_BOUND)
            return None
        status = body.get("status") or {}
        handle = status.get("snapshotHandle")
        if not handle or status.get("readyToUse"):
            return None
        try:
            info = await self.azure.get_snapshot(SnapshotId.parse(str(handle), self.subscription))
            ready = decisions.snapshot_ready(info)
        except SnapshotterError as exc:
            await self.recorder.error(body, exc)
            return Requeue(exc.retry_after) if exc.retryable else Requeue(MISSING_RECHECK)
        if not ready:
            return Requeue()
        updated = await self.api.patch(
            VOLUME_SNAPSHOT_CONTENT, meta["name"], {"status": {"readyToUse": True}}, subresource="status"
        )
        if updated.get("metadata", {}).get("name"):
            self.members.apply("MODIFIED", updated)
        return None
