"""The Azure port: what the core needs from Azure, in the core's own terms.

Two implementations exist: the real adapter over the Azure SDKs
(``elasticsan_snapshotter.azure.client``) and a stateful in-memory fake
(``elasticsan_snapshotter.azure.fake``). One contract test suite runs against
both. Every method raises only errors from ``elasticsan_snapshotter.domain.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from elasticsan_snapshotter.domain.identity import (
    DiskSnapshotId,
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
)

SUCCEEDED = "Succeeded"
FAILED = "Failed"

VolumeSource = SnapshotId | DiskSnapshotId
"""Where a new volume's data comes from; ``None`` means an empty volume."""


@dataclass(frozen=True)
class ElasticSanInfo:
    id: ElasticSanId
    location: str
    total_size_tib: int
    total_volume_size_gib: int
    provisioning_state: str


@dataclass(frozen=True)
class VolumeInfo:
    id: VolumeId
    size_gib: int
    provisioning_state: str
    target_iqn: str
    target_portal_hostname: str
    target_portal_port: int
    source: VolumeSource | None = None

    @property
    def target_portal(self) -> str:
        return f"{self.target_portal_hostname}:{self.target_portal_port}"


@dataclass(frozen=True)
class SnapshotInfo:
    """An Elastic SAN volume snapshot."""

    id: SnapshotId
    source_volume: VolumeId
    source_volume_size_gib: int
    provisioning_state: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class DiskSnapshotInfo:
    """A managed-disk snapshot, typically exported from an Elastic SAN snapshot."""

    id: DiskSnapshotId
    location: str
    provisioning_state: str
    completion_percent: float
    source: SnapshotId | None = None
    size_gib: int | None = None
    created_at: datetime | None = None
    copy_error: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class AzurePort(Protocol):
    """Asynchronous operations on Elastic SAN and managed-disk snapshots.

    Create operations are idempotent by name: an existing resource made from the
    same source is adopted (returned as it is), one made from a different source
    raises ``AlreadyExists``. Delete operations treat a missing resource as deleted.
    """

    async def list_elastic_sans(self) -> list[ElasticSanInfo]: ...

    async def get_elastic_san(self, san: ElasticSanId) -> ElasticSanInfo: ...

    async def list_volume_groups(self, san: ElasticSanId) -> list[VolumeGroupId]: ...

    async def list_volumes(self, volume_group: VolumeGroupId) -> list[VolumeInfo]: ...

    async def get_volume(self, volume: VolumeId) -> VolumeInfo: ...

    async def create_volume(
        self, volume: VolumeId, size_gib: int, source: VolumeSource | None = None
    ) -> VolumeInfo: ...

    async def delete_volume(self, volume: VolumeId, *, delete_snapshots: bool) -> None:
        """Delete a volume. Without ``delete_snapshots`` a volume that has snapshots is refused."""

    async def create_snapshot(
        self, snapshot: SnapshotId, source: VolumeId, *, fresh: bool = False
    ) -> SnapshotInfo:
        """Create ``snapshot`` of ``source``, or adopt the one an earlier attempt made.

        ``fresh``: the caller knows no earlier attempt can have sent this create (nothing marked
        it as begun), so the adapter may skip looking the name up first: one read fewer.
        """
        ...

    async def get_snapshot(self, snapshot: SnapshotId) -> SnapshotInfo: ...

    async def list_snapshots(
        self, volume_group: VolumeGroupId, volume_name: str | None = None
    ) -> list[SnapshotInfo]: ...

    async def delete_snapshot(self, snapshot: SnapshotId) -> None: ...

    async def create_disk_snapshot(
        self,
        disk_snapshot: DiskSnapshotId,
        source: SnapshotId,
        *,
        location: str,
        sku: str = "Standard_LRS",
        incremental: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> DiskSnapshotInfo: ...

    async def get_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> DiskSnapshotInfo: ...

    async def delete_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> None: ...

    async def close(self) -> None: ...


async def check_access(azure: AzurePort, managed_sans: Sequence[ElasticSanId]) -> None:
    """One cheap authenticated read; raises when the credentials or the role assignment do not work.

    Done at start-up it also leaves a token and an open connection for the first real call.
    """
    if managed_sans:
        await azure.get_elastic_san(managed_sans[0])
    else:
        await azure.list_elastic_sans()


__all__ = [
    "FAILED",
    "SUCCEEDED",
    "AzurePort",
    "DiskSnapshotInfo",
    "ElasticSanInfo",
    "SnapshotInfo",
    "VolumeInfo",
    "VolumeSource",
    "check_access",
]
