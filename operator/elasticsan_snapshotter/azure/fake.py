"""``InMemoryAzure``: a stateful in-memory implementation of the Azure port for tests.

It keeps the rules the real service (and the emulator) keeps, so code tested against
it behaves the same against Azure:

* regions per Elastic SAN; restores and exports only within one region;
* capacity: a SAN holds ``base + extended`` TiB; volumes and snapshot data must fit.
  A volume's first snapshot takes no space, each later one takes what was written to the
  volume since the snapshot before (set with :meth:`InMemoryAzure.set_written`);
* at most 200 snapshots per volume (``LimitReached``) and at most 7 new snapshots per
  volume in any 5 minutes (``Throttled`` with the delay until the next one fits);
* the API's name rules; creates idempotent by name (same source: adopted; other
  source: ``AlreadyExists``); deletes of missing resources succeed;
* a volume with snapshots is deleted only with ``delete_snapshots=True``;
* exports (``CopyFromSanSnapshot``) are limited to 4 TiB and advance ``completion_percent``
  from 0 to 100 over ``export_seconds`` of the injectable clock (or :meth:`advance`);
* IQNs and portals in the service's formats.

Test helpers: ``add_*`` seed resources, :meth:`fail_next` injects errors,
:meth:`fail_answers` injects failed answers that a retrying client absorbs,
:attr:`calls` counts calls per operation. Nothing here imports the Azure SDK.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from elasticsan_snapshotter.domain.decisions import (
    MAX_EXPORT_GIB,
    SNAPSHOT_RATE_LIMIT,
    SNAPSHOT_RATE_WINDOW,
    TIB_IN_GIB,
    VolumeHasSnapshots,
    check_snapshot_count,
    check_volume_delete,
    check_volume_from_disk_snapshot,
    check_volume_size,
    same_region,
    snapshot_rate_delay,
)
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    CapacityExhausted,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    Throttled,
)
from elasticsan_snapshotter.domain.identity import (
    DiskSnapshotId,
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
)
from elasticsan_snapshotter.domain.names import (
    validate_disk_snapshot_name,
    validate_elastic_san_name,
    validate_snapshot_name,
    validate_volume_group_name,
    validate_volume_name,
)
from elasticsan_snapshotter.domain.ports import (
    SUCCEEDED,
    AzurePort,
    DiskSnapshotInfo,
    ElasticSanInfo,
    SnapshotInfo,
    VolumeInfo,
    VolumeSource,
)
from elasticsan_snapshotter.domain.provisioning import check_region

ISCSI_PORT = 3260
IQN_PREFIX = "iqn.2023-03.net.windows.core.blob.ElasticSan."
DISK_SNAPSHOT_SKUS = ("Standard_LRS", "Premium_LRS", "Standard_ZRS")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
PORT_OPERATIONS = frozenset(
    {
        "list_elastic_sans",
        "get_elastic_san",
        "list_volume_groups",
        "list_volumes",
        "get_volume",
        "create_volume",
        "delete_volume",
        "create_snapshot",
        "get_snapshot",
        "list_snapshots",
        "delete_snapshot",
        "create_disk_snapshot",
        "get_disk_snapshot",
        "delete_disk_snapshot",
    }
)
"""The port methods :meth:`InMemoryAzure.fail_next` can target."""


class ManualClock:
    """A clock that moves only when told: ``clock.advance(seconds)``."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Fault:
    error: SnapshotterError
    remaining: int | None
    after_effect: bool


@dataclass
class _Storm:
    error: SnapshotterError
    answers: int
    retries: int


@dataclass
class _San:
    id: ElasticSanId
    location: str
    base_size_tib: int
    extended_size_tib: int
    zone: int
    provisioning_state: str = SUCCEEDED


@dataclass
class _Volume:
    id: VolumeId
    size_gib: int
    source: VolumeSource | None
    target_id: str
    written_gib: int = 0
    creations: deque[float] = field(default_factory=deque)


@dataclass
class _Snapshot:
    info: SnapshotInfo
    consumed_gib: int


@dataclass
class _Export:
    info: DiskSnapshotInfo
    started: float
    sku: str
    incremental: bool


class InMemoryAzure:
    """The Azure port, in memory. Every port method is counted in :attr:`calls`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        export_seconds: float = 30.0,
        default_location: str = "westeurope",
        latency: float = 0.0,
    ) -> None:
        self._clock: Callable[[], float] = clock or time.time
        self._offset = 0.0
        self.export_seconds = export_seconds
        self.default_location = default_location
        self.latency = latency
        self.calls: Counter[str] = Counter()
        self._faults: dict[str, deque[_Fault]] = {}
        self._storms: dict[str, _Storm] = {}
        self.failed_answers: Counter[str] = Counter()
        self._sans: dict[ElasticSanId, _San] = {}
        self._groups: set[VolumeGroupId] = set()
        self._volumes: dict[VolumeId, _Volume] = {}
        self._snapshots: dict[SnapshotId, _Snapshot] = {}
        self._exports: dict[DiskSnapshotId, _Export] = {}
        self.closed = False

    # --- clock ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move this fake's time forward (on top of whatever clock it was given)."""
        self._offset += seconds

    def _utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    # --- seeding ----------------------------------------------------------------------------

    def add_elastic_san(
        self,
        san: ElasticSanId,
        *,
        location: str | None = None,
        base_size_tib: int = 1,
        extended_size_tib: int = 0,
        zone: int = 1,
    ) -> ElasticSanInfo:
        validate_elastic_san_name(san.name)
        if base_size_tib < 1 or extended_size_tib < 0:
            raise InvalidRequest("an Elastic SAN needs at least 1 TiB of base capacity")
        self._sans[san] = _San(san, location or self.default_location, base_size_tib, extended_size_tib, zone)
        return self._san_info(self._sans[san])

    def add_volume_group(self, volume_group: VolumeGroupId) -> VolumeGroupId:
        self._require_san(volume_group.san)
        validate_volume_group_name(volume_group.name)
        self._groups.add(volume_group)
        return volume_group

    def add_volume(
        self, volume: VolumeId, size_gib: int, *, source: VolumeSource | None = None, written_gib: int = 0
    ) -> VolumeInfo:
        """Seed a volume (its volume group must exist); capacity and sources are not checked."""
        self._require_group(volume.volume_group)
        validate_volume_name(volume.name)
        check_volume_size(size_gib)
        self._volumes[volume] = _Volume(volume, size_gib, source, _target_id(volume), written_gib)
        return self._volume_info(self._volumes[volume])

    def add_snapshot(
        self,
        snapshot: SnapshotId,
        source: VolumeId,
        *,
        provisioning_state: str = SUCCEEDED,
        consumed_gib: int = 0,
        created_at: datetime | None = None,
    ) -> SnapshotInfo:
        """Seed a snapshot without the rate limit, the 200 limit or capacity checks."""
        validate_snapshot_name(snapshot.name)
        volume = self._require_volume(source)
        info = SnapshotInfo(
            snapshot, volume.id, volume.size_gib, provisioning_state, created_at or self._utcnow()
        )
        self._snapshots[snapshot] = _Snapshot(info, consumed_gib)
        return info

    def set_written(self, volume: VolumeId, gib: int) -> None:
        """How much was written to ``volume`` since its last snapshot (what the next one consumes)."""
        self._require_volume(volume).written_gib = gib

    def set_capacity(self, san: ElasticSanId, *, base_size_tib: int, extended_size_tib: int = 0) -> None:
        state = self._require_san(san)
        state.base_size_tib, state.extended_size_tib = base_size_tib, extended_size_tib

    def set_snapshot_state(self, snapshot: SnapshotId, provisioning_state: str) -> None:
        held = self._require_snapshot(snapshot)
        held.info = replace(held.info, provisioning_state=provisioning_state)

    def fail_export(self, disk_snapshot: DiskSnapshotId, message: str) -> None:
        """Make an export's copy fail with ``message`` (shown as ``copy_error``)."""
        held = self._require_export(disk_snapshot)
        held.info = replace(held.info, copy_error=message)

    def used_gib(self, san: ElasticSanId) -> int:
        """Capacity in use: volume sizes plus the data held by snapshots."""
        volumes = sum(v.size_gib for v in self._volumes.values() if v.id.volume_group.san == san)
        snaps = sum(s.consumed_gib for s in self._snapshots.values() if s.info.id.volume_group.san == san)
        return volumes + snaps

    def capacity_gib(self, san: ElasticSanId) -> int:
        state = self._require_san(san)
        return (state.base_size_tib + state.extended_size_tib) * TIB_IN_GIB

    # --- error injection and counters -------------------------------------------------------

    def fail_next(
        self,
        operation: str,
        error: SnapshotterError,
        *,
        times: int | None = 1,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` (a port method name) raise ``error``.

        ``times=None`` fails every call until :meth:`clear_faults`. With ``after_effect`` the call
        does its work first and then raises, as when a response is lost after Azure acted.
        Faults queued for one operation apply in the order they were added.
        """
        if operation not in PORT_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {sorted(PORT_OPERATIONS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for always")
        self._faults.setdefault(operation, deque()).append(_Fault(error, times, after_effect))

    def fail_answers(self, operation: str, error: SnapshotterError, *, answers: int, retries: int) -> None:
        """The next ``answers`` answers to ``operation`` fail with ``error``, as seen through a client
        that retries each call ``retries`` times (azure-core under the real adapter).

        A call fails only when each of its ``1 + retries`` attempts gets a failed answer; a call
        that meets fewer succeeds. :attr:`failed_answers` counts them, as the service's request
        log would, so a test can tell an absorbed storm from none at all.
        """
        if operation not in PORT_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {sorted(PORT_OPERATIONS)}")
        if answers < 1 or retries < 0:
            raise ValueError("answers must be at least 1 and retries not negative")
        self._storms[operation] = _Storm(error, answers, retries)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._storms.clear()

    def call_count(self, operation: str) -> int:
        return self.calls[operation]

    def reset_calls(self) -> None:
        self.calls.clear()

    async def _enter(self, operation: str) -> _Fault | None:
        """Count the call; raise a queued fault now, or hand back one that strikes after the work.

        Every call yields to the event loop first (for ``latency`` seconds, default 0), as a
        network call would, so concurrent callers interleave the way they do against Azure.
        """
        self.calls[operation] += 1
        await asyncio.sleep(self.latency)
        storm = self._storms.get(operation)
        if storm is not None:
            failed = min(storm.answers, storm.retries + 1)
            storm.answers -= failed
            self.failed_answers[operation] += failed
            if storm.answers == 0:
                del self._storms[operation]
            if failed == storm.retries + 1:
                raise copy.copy(storm.error)
        queue = self._faults.get(operation)
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                queue.popleft()
        if fault.after_effect:
            return fault
        raise copy.copy(fault.error)

    @staticmethod
    def _leave(fault: _Fault | None) -> None:
        if fault is not None:
            raise copy.copy(fault.error)

    # --- Elastic SANs and volume groups -----------------------------------------------------

    async def list_elastic_sans(self) -> list[ElasticSanInfo]:
        fault = await self._enter("list_elastic_sans")
        result = [self._san_info(s) for s in self._sans.values()]
        self._leave(fault)
        return result

    async def get_elastic_san(self, san: ElasticSanId) -> ElasticSanInfo:
        fault = await self._enter("get_elastic_san")
        result = self._san_info(self._require_san(san))
        self._leave(fault)
        return result

    async def list_volume_groups(self, san: ElasticSanId) -> list[VolumeGroupId]:
        fault = await self._enter("list_volume_groups")
        self._require_san(san)
        result = sorted((g for g in self._groups if g.san == san), key=lambda g: g.name.lower())
        self._leave(fault)
        return result

    # --- volumes ----------------------------------------------------------------------------

    async def list_volumes(self, volume_group: VolumeGroupId) -> list[VolumeInfo]:
        fault = await self._enter("list_volumes")
        self._require_group(volume_group)
        found = [v for v in self._volumes.values() if v.id.volume_group == volume_group]
        result = [self._volume_info(v) for v in sorted(found, key=lambda v: v.id.name.lower())]
        self._leave(fault)
        return result

    async def get_volume(self, volume: VolumeId) -> VolumeInfo:
        fault = await self._enter("get_volume")
        result = self._volume_info(self._require_volume(volume))
        self._leave(fault)
        return result

    async def create_volume(
        self, volume: VolumeId, size_gib: int, source: VolumeSource | None = None
    ) -> VolumeInfo:
        fault = await self._enter("create_volume")
        validate_volume_name(volume.name)
        check_volume_size(size_gib)
        existing = self._volumes.get(volume)
        if existing is not None:
            if existing.source != source or existing.size_gib != size_gib:
                raise AlreadyExists(
                    f"volume {volume.arm_id} exists with size {existing.size_gib} GiB from "
                    f"{_describe(existing.source)}, not {size_gib} GiB from {_describe(source)}"
                )
            result = self._volume_info(existing)
        else:
            san = self._require_san(volume.volume_group.san)
            self._require_group(volume.volume_group)
            self._check_volume_source(san, size_gib, source)
            self._check_room(san.id, size_gib, f"a {size_gib} GiB volume")
            self._volumes[volume] = _Volume(volume, size_gib, source, _target_id(volume))
            result = self._volume_info(self._volumes[volume])
        self._leave(fault)
        return result

    async def delete_volume(self, volume: VolumeId, *, delete_snapshots: bool) -> None:
        fault = await self._enter("delete_volume")
        if volume in self._volumes:
            snapshots = [s.info for s in self._snapshots.values()]
            for doomed in check_volume_delete(volume, snapshots, delete_snapshots=delete_snapshots):
                del self._snapshots[doomed]
            del self._volumes[volume]
        self._leave(fault)

    # --- snapshots --------------------------------------------------------------------------

    async def create_snapshot(
        self, snapshot: SnapshotId, source: VolumeId, *, fresh: bool = False
    ) -> SnapshotInfo:
        fault = await self._enter("create_snapshot")
        validate_snapshot_name(snapshot.name)
        existing = self._snapshots.get(snapshot)
        if existing is not None:
            if existing.info.source_volume != source:
                raise AlreadyExists(
                    f"snapshot {snapshot.arm_id} exists and was taken from "
                    f"{existing.info.source_volume.arm_id}, not {source.arm_id}"
                )
            result = existing.info
        else:
            result = self._take_snapshot(snapshot, self._require_volume(source))
        self._leave(fault)
        return result

    def _take_snapshot(self, snapshot: SnapshotId, volume: _Volume) -> SnapshotInfo:
        if snapshot.volume_group != volume.id.volume_group:
            raise InvalidRequest(
                f"snapshot {snapshot.arm_id} must be in the volume group of its source volume "
                f"{volume.id.arm_id}"
            )
        taken = [s for s in self._snapshots.values() if s.info.source_volume == volume.id]
        check_snapshot_count(volume.id, len(taken))
        now = self.now()
        delay = snapshot_rate_delay(volume.creations, now)
        if delay > 0:
            raise Throttled(
                f"volume {volume.id.arm_id} had {SNAPSHOT_RATE_LIMIT} snapshots in the last "
                f"{SNAPSHOT_RATE_WINDOW:.0f} s; retry in {delay:.0f} s",
                retry_after=delay,
            )
        consumed = volume.written_gib if taken else 0
        self._check_room(volume.id.volume_group.san, consumed, f"a snapshot holding {consumed} GiB")
        volume.creations.append(now)
        while volume.creations and now - volume.creations[0] >= SNAPSHOT_RATE_WINDOW:
            volume.creations.popleft()
        volume.written_gib = 0
        info = SnapshotInfo(snapshot, volume.id, volume.size_gib, SUCCEEDED, self._utcnow())
        self._snapshots[snapshot] = _Snapshot(info, consumed)
        return info

    async def get_snapshot(self, snapshot: SnapshotId) -> SnapshotInfo:
        fault = await self._enter("get_snapshot")
        result = self._require_snapshot(snapshot).info
        self._leave(fault)
        return result

    async def list_snapshots(
        self, volume_group: VolumeGroupId, volume_name: str | None = None
    ) -> list[SnapshotInfo]:
        fault = await self._enter("list_snapshots")
        self._require_group(volume_group)
        result = [
            s.info
            for s in self._snapshots.values()
            if s.info.id.volume_group == volume_group
            and (volume_name is None or s.info.source_volume.name.lower() == volume_name.lower())
        ]
        result.sort(key=lambda i: i.id.name.lower())
        self._leave(fault)
        return result

    async def delete_snapshot(self, snapshot: SnapshotId) -> None:
        fault = await self._enter("delete_snapshot")
        self._snapshots.pop(snapshot, None)
        self._leave(fault)

    # --- managed-disk snapshots (export) ----------------------------------------------------

    async def create_disk_snapshot(
        self,
        disk_snapshot: DiskSnapshotId,
        source: SnapshotId,
        *,
        location: str,
        sku: str = "Standard_LRS",
        incremental: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> DiskSnapshotInfo:
        fault = await self._enter("create_disk_snapshot")
        validate_disk_snapshot_name(disk_snapshot.name)
        existing = self._exports.get(disk_snapshot)
        if existing is not None:
            if existing.info.source != source:
                raise AlreadyExists(
                    f"managed-disk snapshot {disk_snapshot.arm_id} exists and was made from "
                    f"{_describe(existing.info.source)}, not {source.arm_id}"
                )
            result = self._export_info(existing)
        else:
            result = self._start_export(disk_snapshot, source, location, sku, incremental, tags or {})
        self._leave(fault)
        return result

    def _start_export(
        self,
        disk_snapshot: DiskSnapshotId,
        source: SnapshotId,
        location: str,
        sku: str,
        incremental: bool,
        tags: Mapping[str, str],
    ) -> DiskSnapshotInfo:
        if sku not in DISK_SNAPSHOT_SKUS:
            raise InvalidRequest(
                f"unknown snapshot sku {sku!r}; expected one of {', '.join(DISK_SNAPSHOT_SKUS)}"
            )
        snap = self._require_snapshot(source).info
        san = self._require_san(source.volume_group.san)
        if not same_region(san.location, location):
            raise InvalidRequest(
                f"snapshot {source.arm_id} is in {san.location!r}; it can only be exported to the same "
                f"region, not {location!r}"
            )
        if snap.source_volume_size_gib > MAX_EXPORT_GIB:
            raise InvalidRequest(
                f"snapshot {source.arm_id} is of a {snap.source_volume_size_gib} GiB volume; snapshots of "
                f"volumes larger than {MAX_EXPORT_GIB} GiB cannot be exported"
            )
        info = DiskSnapshotInfo(
            id=disk_snapshot,
            location=location,
            provisioning_state=SUCCEEDED,
            completion_percent=0.0,
            source=source,
            size_gib=snap.source_volume_size_gib,
            created_at=self._utcnow(),
            tags=dict(tags),
        )
        self._exports[disk_snapshot] = _Export(info, self.now(), sku, incremental)
        return self._export_info(self._exports[disk_snapshot])

    async def get_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> DiskSnapshotInfo:
        fault = await self._enter("get_disk_snapshot")
        result = self._export_info(self._require_export(disk_snapshot))
        self._leave(fault)
        return result

    async def delete_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> None:
        fault = await self._enter("delete_disk_snapshot")
        self._exports.pop(disk_snapshot, None)
        self._leave(fault)

    async def close(self) -> None:
        self.calls["close"] += 1
        self.closed = True

    # --- internals --------------------------------------------------------------------------

    def _require_san(self, san: ElasticSanId) -> _San:
        found = self._sans.get(san)
        if found is None:
            raise NotFound(f"Elastic SAN {san.arm_id} not found")
        return found

    def _require_group(self, volume_group: VolumeGroupId) -> VolumeGroupId:
        self._require_san(volume_group.san)
        if volume_group not in self._groups:
            raise NotFound(f"volume group {volume_group.arm_id} not found")
        return volume_group

    def _require_volume(self, volume: VolumeId) -> _Volume:
        found = self._volumes.get(volume)
        if found is None:
            raise NotFound(f"volume {volume.arm_id} not found")
        return found

    def _require_snapshot(self, snapshot: SnapshotId) -> _Snapshot:
        found = self._snapshots.get(snapshot)
        if found is None:
            raise NotFound(f"snapshot {snapshot.arm_id} not found")
        return found

    def _require_export(self, disk_snapshot: DiskSnapshotId) -> _Export:
        found = self._exports.get(disk_snapshot)
        if found is None:
            raise NotFound(f"managed-disk snapshot {disk_snapshot.arm_id} not found")
        return found

    def _check_room(self, san: ElasticSanId, gib: int, what: str) -> None:
        free = self.capacity_gib(san) - self.used_gib(san)
        if gib > free:
            raise CapacityExhausted(
                f"Elastic SAN {san.arm_id} has {free} GiB free, not enough for {what}; "
                "grow the SAN or free space"
            )

    def _check_volume_source(self, san: _San, size_gib: int, source: VolumeSource | None) -> None:
        if isinstance(source, SnapshotId):
            snap = self._require_snapshot(source).info
            origin = self._require_san(source.volume_group.san)
            check_region(origin.location, san.location, source)
            if size_gib < snap.source_volume_size_gib:
                raise InvalidRequest(
                    f"a volume from snapshot {source.arm_id} needs at least {snap.source_volume_size_gib} "
                    f"GiB, not {size_gib} GiB"
                )
        elif isinstance(source, DiskSnapshotId):
            export = self._export_info(self._require_export(source))
            check_volume_from_disk_snapshot(
                requested_gib=size_gib, disk_snapshot=export, target_region=san.location
            )

    def _san_info(self, san: _San) -> ElasticSanInfo:
        total = sum(v.size_gib for v in self._volumes.values() if v.id.volume_group.san == san.id)
        return ElasticSanInfo(
            id=san.id,
            location=san.location,
            total_size_tib=san.base_size_tib + san.extended_size_tib,
            total_volume_size_gib=total,
            provisioning_state=san.provisioning_state,
        )

    def _volume_info(self, volume: _Volume) -> VolumeInfo:
        zone = self._sans[volume.id.volume_group.san].zone
        return VolumeInfo(
            id=volume.id,
            size_gib=volume.size_gib,
            provisioning_state=SUCCEEDED,
            target_iqn=f"{IQN_PREFIX}es-{volume.target_id}:{volume.id.name}",
            target_portal_hostname=f"es-{volume.target_id}.z{zone}.blob.storage.azure.net",
            target_portal_port=ISCSI_PORT,
            source=volume.source,
        )

    def _export_info(self, export: _Export) -> DiskSnapshotInfo:
        if export.info.copy_error:
            return export.info
        if self.export_seconds <= 0:
            percent = 100.0
        else:
            percent = min(100.0, max(0.0, (self.now() - export.started) / self.export_seconds * 100.0))
        return replace(export.info, completion_percent=round(percent, 2))


def _target_id(volume: VolumeId) -> str:
    """Twelve lower-case letters and digits, stable for one volume, like the service's ``es-…`` ids."""
    digest = hashlib.sha256(volume.arm_id.lower().encode()).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in digest[:12])


def _describe(source: object) -> str:
    arm_id = getattr(source, "arm_id", None)
    return str(arm_id) if arm_id else "no source"


__all__ = [
    "DISK_SNAPSHOT_SKUS",
    "IQN_PREFIX",
    "ISCSI_PORT",
    "PORT_OPERATIONS",
    "InMemoryAzure",
    "ManualClock",
    "VolumeHasSnapshots",
]


def _conforms(fake: InMemoryAzure) -> AzurePort:
    """Lets mypy prove the fake satisfies the port."""
    return fake
