"""``exportBeforeVolumeDelete``: exports before a provisioned volume with snapshots is deleted.

Before the volume releaser deletes an Elastic SAN volume that still has snapshots, the guard
creates one ElasticSanSnapshotExport per snapshot that has none and reports when all of them
have succeeded; only then is the volume deleted together with its snapshots.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain import parameters
from elasticsan_snapshotter.domain.errors import AlreadyExists, Forbidden, InvalidRequest, NotFound
from elasticsan_snapshotter.domain.identity import SnapshotId, VolumeId, parse_snapshot_handle
from elasticsan_snapshotter.domain.ports import SnapshotInfo
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING, EventRecorder
from elasticsan_snapshotter.kubernetes.export_spec import RETAIN
from elasticsan_snapshotter.kubernetes.export_status import FAILED, SUCCEEDED
from elasticsan_snapshotter.kubernetes.resources import SNAPSHOT_EXPORT
from elasticsan_snapshotter.kubernetes.stores import Store

LABEL_VOLUME = f"{DRIVER_NAME}/exported-before-delete-of"
"""On exports made by ``ExportGuard``: the PersistentVolume whose deletion they protect against."""
GUARD_WAIT = 5.0
FALLBACK_NAMESPACE = "default"
"""Where protective exports go when the released claim's namespace no longer takes objects."""


@dataclass(frozen=True)
class Verdict:
    """What the volume releaser should do about a volume that still has snapshots."""

    delete_snapshots: bool = False
    """Every snapshot is exported: delete the volume together with its snapshots."""
    wait: float | None = None
    """Exports are running: look again after this many seconds."""


def guard_export_name(snapshot: SnapshotId) -> str:
    """The export object made for one snapshot: ``keep-<snapshot name>-<hash of its ARM ID>``.

    The hash keeps snapshots of the same name in different volume groups apart; a snapshot
    name that is no DNS label leaves only ``keep-<hash>``.
    """
    digest = hashlib.sha256(snapshot.arm_id.lower().encode()).hexdigest()
    readable = f"keep-{snapshot.name.lower()}"[:54].rstrip("-")
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", readable):
        return f"{readable}-{digest[:8]}"
    return f"keep-{digest[:16]}"


class ExportGuard:
    """``exportBeforeVolumeDelete``: an export object per snapshot, and the volume deleted only after them."""

    def __init__(
        self,
        *,
        subscription: str,
        api: KubeApi,
        recorder: EventRecorder,
        exports: Store,
        contents: Store,
        snapshot_classes: Store,
    ) -> None:
        self.subscription = subscription
        self.api = api
        self.recorder = recorder
        self.exports = exports
        self.contents = contents
        self.snapshot_classes = snapshot_classes

    def covered(self, snapshot: SnapshotInfo, storage_class: parameters.StorageClassParameters) -> bool:
        """The StorageClass, or the VolumeSnapshotClass the snapshot was taken with, asks for export."""
        if storage_class.export_before_volume_delete:
            return True
        content = self._content_of(snapshot.id)
        class_name = ((content or {}).get("spec") or {}).get("volumeSnapshotClassName")
        snapshot_class = self.snapshot_classes.get(str(class_name)) if class_name else None
        if snapshot_class is None:
            return False
        parsed = parameters.parse_snapshot_class(
            snapshot_class.get("parameters"), f"VolumeSnapshotClass {class_name}"
        )
        return parsed.export_before_volume_delete

    async def before_volume_delete(
        self,
        pv: Body,
        volume: VolumeId,
        snapshots: list[SnapshotInfo],
        storage_class: parameters.StorageClassParameters,
    ) -> Verdict:
        covered = [s for s in snapshots if self.covered(s, storage_class)]
        if not covered:
            return Verdict()
        claim_namespace = ((pv.get("spec") or {}).get("claimRef") or {}).get(
            "namespace"
        ) or FALLBACK_NAMESPACE
        pending: list[str] = []
        failed: list[str] = []
        for snapshot in covered:
            export = self._export_of(snapshot.id) or await self._create_export(
                pv, claim_namespace, volume, snapshot.id
            )
            phase = (export.get("status") or {}).get("phase")
            label = f"{export['metadata']['namespace']}/{export['metadata']['name']}"
            if phase == FAILED:
                failed.append(label)
            elif phase != SUCCEEDED:
                pending.append(label)
        if failed:
            await self.recorder.record(
                pv,
                WARNING,
                "ExportBeforeDeleteFailed",
                f"Elastic SAN volume {volume.arm_id} is kept: export(s) {', '.join(sorted(failed))} failed; "
                "see their status, fix the cause and delete them to try again",
            )
            return Verdict()
        if pending:
            await self.recorder.record(
                pv,
                NORMAL,
                "ExportingBeforeDelete",
                f"Elastic SAN volume {volume.arm_id} is deleted once its snapshots are exported: waiting for "
                f"{', '.join(sorted(pending))}",
            )
            return Verdict(wait=GUARD_WAIT)
        if len(covered) < len(snapshots):
            return Verdict()  # some snapshots are not to be exported: the volume stays, with the usual Event
        await self.recorder.record(
            pv,
            NORMAL,
            "SnapshotsExported",
            f"all {len(covered)} snapshot(s) of Elastic SAN volume {volume.arm_id} are exported to managed-disk "
            "snapshots; deleting the volume with its snapshots",
        )
        return Verdict(delete_snapshots=True)

    def _content_of(self, snapshot: SnapshotId) -> Body | None:
        for content in self.contents:
            handle = (content.get("status") or {}).get("snapshotHandle") or (
                (content.get("spec") or {}).get("source") or {}
            ).get("snapshotHandle")
            if not handle:
                continue
            try:
                if parse_snapshot_handle(str(handle), self.subscription) == snapshot:
                    return content
            except InvalidRequest:
                continue
        return None

    def _export_of(self, snapshot: SnapshotId) -> Body | None:
        """An export of this snapshot that has not failed (or, failing that, a failed one)."""
        found: Body | None = None
        for export in self.exports:
            status = export.get("status") or {}
            source_id = status.get("sourceSnapshotId")
            if not source_id:
                continue
            try:
                same = SnapshotId.parse(str(source_id), self.subscription) == snapshot
            except InvalidRequest:
                continue
            if same and (export.get("metadata") or {}).get("deletionTimestamp") is None:
                if status.get("phase") != FAILED:
                    return export
                found = export
        return found

    async def _create_export(
        self, pv: Body, claim_namespace: str, volume: VolumeId, snapshot: SnapshotId
    ) -> Body:
        name = guard_export_name(snapshot)
        for namespace in dict.fromkeys((claim_namespace, FALLBACK_NAMESPACE)):
            existing = self.exports.get(f"{namespace}/{name}")
            if existing is not None:
                return existing
        try:
            return await self._create_export_in(pv, claim_namespace, name, volume, snapshot)
        except (NotFound, Forbidden):
            if claim_namespace == FALLBACK_NAMESPACE:
                raise
            # The claim's namespace is gone or terminating (namespace deletion releases volumes).
            return await self._create_export_in(pv, FALLBACK_NAMESPACE, name, volume, snapshot)

    async def _create_export_in(
        self, pv: Body, namespace: str, name: str, volume: VolumeId, snapshot: SnapshotId
    ) -> Body:
        body: Body = {
            "apiVersion": SNAPSHOT_EXPORT.api_version,
            "kind": SNAPSHOT_EXPORT.kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LABEL_VOLUME: pv["metadata"]["name"]},
                "annotations": {f"{DRIVER_NAME}/volume-id": volume.arm_id},
            },
            "spec": {"source": {"snapshotHandle": snapshot.arm_id}, "deletionPolicy": RETAIN},
        }
        try:
            created = await self.api.create(SNAPSHOT_EXPORT, body, namespace)
        except AlreadyExists:
            found = await self.api.get(SNAPSHOT_EXPORT, name, namespace)
            if found is None:
                raise
            created = found
        self.exports.apply("ADDED", created)
        await self.recorder.record(
            pv,
            NORMAL,
            "ExportCreated",
            f"created ElasticSanSnapshotExport {namespace}/{name} for snapshot {snapshot.name} before deleting "
            f"volume {volume.arm_id}",
        )
        return created


__all__ = ["LABEL_VOLUME", "ExportGuard", "Verdict", "guard_export_name"]
