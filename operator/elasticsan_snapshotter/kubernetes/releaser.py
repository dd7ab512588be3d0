"""Released volumes: a PersistentVolume of ours with reclaim policy Delete takes its Elastic SAN volume.

Never silently together with its snapshots: a volume that still has some is kept with a
Warning Event, unless the StorageClass says ``deleteSnapshotsWithVolume: "true"`` or
``exportBeforeVolumeDelete`` has exported them first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from elasticsan_snapshotter.domain import decisions, parameters
from elasticsan_snapshotter.domain.errors import NotFound, SnapshotterError
from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING
from elasticsan_snapshotter.kubernetes.export_guard import ExportGuard
from elasticsan_snapshotter.kubernetes.provisioner import class_parameters
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import ANN_PROVISIONED_BY, FIN_VOLUME, PERSISTENT_VOLUME
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue


@dataclass(kw_only=True, eq=False)
class VolumeReleaser(Reconciler):
    """Deletes the Elastic SAN volume of a released PV of ours, with reclaim policy Delete."""

    volumes: PersistentVolumes
    storage_classes: Store
    export_guard: ExportGuard | None = None

    def is_ours(self, pv: Body) -> bool:
        annotations = (pv.get("metadata") or {}).get("annotations") or {}
        return annotations.get(ANN_PROVISIONED_BY) == self.driver_name

    async def reconcile(self, key: str) -> Outcome:
        pv = self.volumes.get(key)
        if pv is None or not self.is_ours(pv):
            return None
        meta, spec = pv["metadata"], pv.get("spec") or {}
        released = (pv.get("status") or {}).get("phase") in ("Released", "Failed")
        deleting = bool(meta.get("deletionTimestamp"))
        if not (released or deleting):
            return None
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            if deleting:
                await self.api.remove_finalizer(PERSISTENT_VOLUME, pv, FIN_VOLUME)
            return None
        try:
            volume = VolumeId.parse(spec["csi"]["volumeHandle"], self.subscription)
            snapshots = decisions.snapshots_of(
                volume, await self.azure.list_snapshots(volume.volume_group, volume.name)
            )
            params = class_parameters(self.storage_classes.get(spec.get("storageClassName") or "") or {})
            delete_snapshots = params.delete_snapshots_with_volume
            if snapshots and not delete_snapshots and self.export_guard is not None:
                # exportBeforeVolumeDelete: export the snapshots first, then delete them with the volume.
                verdict = await self.export_guard.before_volume_delete(pv, volume, snapshots, params)
                if verdict.wait is not None:
                    return Requeue(verdict.wait)
                delete_snapshots = verdict.delete_snapshots
            try:
                doomed = decisions.check_volume_delete(volume, snapshots, delete_snapshots=delete_snapshots)
            except decisions.VolumeHasSnapshots as kept:
                await self.recorder.record(
                    pv,
                    WARNING,
                    kept.reason,
                    f"{kept}, or set StorageClass parameter {parameters.DELETE_SNAPSHOTS_WITH_VOLUME}: "
                    '"true"; the volume is kept until then',
                )
                return Requeue(retry.FINAL_RECHECK)
            with contextlib.suppress(NotFound):
                await self.azure.delete_volume(volume, delete_snapshots=bool(doomed))
        except SnapshotterError as exc:
            return await retry.handle(self.recorder, pv, exc, resource=PERSISTENT_VOLUME.kind)
        await self.recorder.record(pv, NORMAL, "VolumeDeleted", f"deleted Elastic SAN volume {volume.arm_id}")
        await self.api.remove_finalizer(PERSISTENT_VOLUME, pv, FIN_VOLUME)
        await self.api.delete(PERSISTENT_VOLUME, meta["name"], uid=meta.get("uid"))
        return None


__all__ = ["VolumeReleaser"]
