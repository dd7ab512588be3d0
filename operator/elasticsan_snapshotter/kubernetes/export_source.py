"""Where an export copies from, and the checks made before any Azure write.

The source (a VolumeSnapshot in the export's namespace, a VolumeSnapshotContent, or an
Elastic SAN snapshot handle) must be ours and ready; a source still being created keeps the
export ``Pending`` (:class:`SourceNotReady`), one that failed for good fails it
(:class:`SourceFailed`). The target must fit: at most 4 TiB, in the SAN's region, and its
name not taken by a managed-disk snapshot of another source.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsan_snapshotter.domain import decisions, names
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    bounded,
)
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, SnapshotId, parse_snapshot_handle
from elasticsan_snapshotter.domain.ports import AzurePort
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.export_spec import ExportSpec
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_GROUP_MEMBER_HANDLE,
    FIN_EXPORT_SOURCE,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)

SOURCE_WAIT = 5.0
"""Seconds between looks at a source that is not ready yet."""


class SourceNotReady(SnapshotterError):
    """The source snapshot is still being created; the export waits in ``Pending``."""

    reason = "SourceNotReady"
    retryable = True
    default_retry_after = SOURCE_WAIT


class SourceFailed(InvalidRequest):
    """The source snapshot failed for good; the export fails with its reason."""

    reason = "SourceFailed"


@dataclass(frozen=True)
class Source:
    snapshot: SnapshotId
    description: str
    volume_snapshot: str | None = None


@dataclass(kw_only=True, eq=False)
class ExportSources:
    api: KubeApi
    azure: AzurePort
    subscription: str
    driver_name: str
    export_resource_group: str = ""
    group_driver_name: str = ""
    """Member contents of a group carry this driver (the PVs'); their snapshots are ours too."""

    async def resolve(self, body: Body, spec: ExportSpec) -> Source:
        namespace = body["metadata"]["namespace"]
        if spec.volume_snapshot:
            vs = await self.api.get(VOLUME_SNAPSHOT, spec.volume_snapshot, namespace)
            if vs is None:
                raise InvalidRequest(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} does not exist; an export's source "
                    "must be a VolumeSnapshot in the export's namespace"
                )
            if (vs.get("metadata") or {}).get("deletionTimestamp") and not _has_finalizer(
                vs, FIN_EXPORT_SOURCE
            ):
                raise InvalidRequest(f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is being deleted")
            content_name = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
            if not content_name:
                raise SourceNotReady(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is not bound to a "
                    "VolumeSnapshotContent yet"
                )
            snapshot = await self._content_snapshot(
                content_name, f"VolumeSnapshot {namespace}/{spec.volume_snapshot}"
            )
            if not (vs.get("status") or {}).get("readyToUse"):
                raise SourceNotReady(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is not ready to use yet"
                )
            return Source(snapshot, spec.describe_source(), spec.volume_snapshot)
        if spec.content:
            snapshot = await self._content_snapshot(spec.content, f"VolumeSnapshotContent {spec.content}")
            return Source(snapshot, spec.describe_source())
        assert spec.handle is not None
        return Source(
            self._elastic_san_snapshot(spec.handle, "spec.source.snapshotHandle"), spec.describe_source()
        )

    async def _content_snapshot(self, content_name: str, what: str) -> SnapshotId:
        itself = f"VolumeSnapshotContent {content_name}"
        named = itself if what == itself else f"{itself} of {what}"
        content = await self.api.get(VOLUME_SNAPSHOT_CONTENT, content_name)
        if content is None:
            raise InvalidRequest(f"{named} does not exist")
        driver = (content.get("spec") or {}).get("driver")
        member = bool(((content.get("metadata") or {}).get("annotations") or {}).get(ANN_GROUP_MEMBER_HANDLE))
        if driver != self.driver_name and not (member and driver == self.group_driver_name):
            raise InvalidRequest(
                f"{what} is handled by driver {driver!r}, not {self.driver_name!r}: only Elastic SAN "
                "snapshots of this driver can be exported"
            )
        status = content.get("status") or {}
        failure = (status.get("error") or {}).get("message")
        if failure and not status.get("readyToUse"):
            # A content's status.error is final by contract: waiting would wait forever.
            raise SourceFailed(f"{named} failed: {bounded(str(failure), 512)}")
        handle = status.get("snapshotHandle") or ((content.get("spec") or {}).get("source") or {}).get(
            "snapshotHandle"
        )
        if not handle:
            raise SourceNotReady(f"{named} has no snapshot handle yet")
        snapshot = self._elastic_san_snapshot(str(handle), f"the snapshot handle of {what}")
        if not status.get("readyToUse"):
            raise SourceNotReady(f"{what} is not ready to use yet")
        return snapshot

    def _elastic_san_snapshot(self, handle: str, what: str) -> SnapshotId:
        target = parse_snapshot_handle(handle, self.subscription)
        if isinstance(target, DiskSnapshotId):
            raise InvalidRequest(
                f"{what} names managed-disk snapshot {target.arm_id}, which is already a managed-disk "
                "snapshot; only Elastic SAN snapshots can be exported"
            )
        return target

    async def checked_target(
        self, body: Body, spec: ExportSpec, source: Source
    ) -> tuple[DiskSnapshotId, int, str]:
        """Every check before the Azure write: source exists and is done, 4 TiB, region, name."""
        try:
            info = await self.azure.get_snapshot(source.snapshot)
        except NotFound:
            raise InvalidRequest(
                f"Elastic SAN snapshot {source.snapshot.arm_id} ({source.description}) does not exist"
            ) from None
        if not decisions.snapshot_ready(info):
            raise SourceNotReady(f"Elastic SAN snapshot {source.snapshot.arm_id} is still being created")
        san = await self.azure.get_elastic_san(source.snapshot.volume_group.san)
        location = spec.location or san.location
        decisions.check_export(
            source_volume_size_gib=info.source_volume_size_gib,
            san_region=san.location,
            target_region=location,
        )
        target = self.target(body, spec, source.snapshot)
        try:
            existing = await self.azure.get_disk_snapshot(target)
        except NotFound:
            existing = None
        if existing is not None and existing.source != source.snapshot:
            origin = existing.source.arm_id if existing.source else "no Elastic SAN snapshot"
            raise AlreadyExists(
                f"managed-disk snapshot {target.arm_id} already exists and was made from {origin}, not from "
                f"{source.snapshot.arm_id}; choose another spec.target.name or resourceGroup"
            )
        return target, info.source_volume_size_gib, location

    def target(self, body: Body, spec: ExportSpec, source: SnapshotId) -> DiskSnapshotId:
        meta = body["metadata"]
        name = spec.target_name or names.export_disk_snapshot_name(meta["namespace"], meta["name"])
        group = spec.resource_group or self.export_resource_group or source.volume_group.san.resource_group
        return DiskSnapshotId(source.volume_group.san.subscription, group, name)


def _has_finalizer(body: Body, finalizer: str) -> bool:
    return finalizer in ((body.get("metadata") or {}).get("finalizers") or [])


__all__ = ["SOURCE_WAIT", "ExportSources", "Source", "SourceFailed", "SourceNotReady"]
