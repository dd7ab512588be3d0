"""Decisions without I/O: readiness, sizes, restores, exports and volume deletion.

Each function takes plain values or the port's Info dataclasses and either returns an
explicit result or raises a domain error whose message tells the user what to change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from elasticsan_snapshotter.domain.errors import InvalidRequest, LimitReached, SnapshotterError, Transient
from elasticsan_snapshotter.domain.identity import SnapshotId, VolumeId
from elasticsan_snapshotter.domain.ports import FAILED, SUCCEEDED, DiskSnapshotInfo, SnapshotInfo

GIB = 2**30
TIB_IN_GIB = 1024
MIN_VOLUME_GIB = 1
MAX_VOLUME_GIB = 64 * TIB_IN_GIB
MAX_EXPORT_GIB = 4 * TIB_IN_GIB
"""Snapshots of volumes larger than 4 TiB cannot be exported to managed-disk snapshots."""
MAX_SNAPSHOTS_PER_VOLUME = 200
SNAPSHOT_RATE_LIMIT = 7
"""At most this many new snapshots per volume in every ``SNAPSHOT_RATE_WINDOW`` seconds."""
SNAPSHOT_RATE_WINDOW = 300.0

ALLOW_VOLUME_MODE_CHANGE_ANNOTATION = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
FILESYSTEM = "Filesystem"
BLOCK = "Block"
VOLUME_MODES = (FILESYSTEM, BLOCK)

_CANCELED = "Canceled"


class SnapshotFailed(SnapshotterError):
    """Azure reports the snapshot (or export copy) as failed; retrying the same resource cannot help."""

    reason = "SnapshotFailed"


class VolumeHasSnapshots(InvalidRequest):
    """Deleting the volume would destroy its snapshots, and nobody decided that is fine."""

    reason = "VolumeHasSnapshots"


# --- quantities and sizes -------------------------------------------------------------------

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>[a-zA-Z]*))"
)
_MAX_EXPONENT = 64
_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


def parse_quantity(value: str | int) -> Fraction:
    """The exact value of a Kubernetes resource quantity such as ``10Gi``, ``1.5T``, ``500M`` or ``1e3``."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, int):
        return Fraction(value)
    if not isinstance(value, str):
        raise InvalidRequest(f"{value!r} is not a Kubernetes quantity")
    text = value.strip()
    found = _QUANTITY.fullmatch(text)
    if not found:
        raise InvalidRequest(
            f"{value!r} is not a Kubernetes quantity: expected a number with an optional suffix "
            "such as Ki, Mi, Gi, Ti, k, M, G, T or an exponent such as e3"
        )
    amount = Fraction(found["number"])
    if found["exponent"]:
        exponent = int(found["exponent"][1:])
        if abs(exponent) > _MAX_EXPONENT:  # refuse before computing an absurd power
            raise InvalidRequest(f"{value!r} is out of range for a Kubernetes quantity")
        return amount * Fraction(10) ** exponent
    suffix = found["suffix"]
    if suffix not in _SUFFIXES:
        raise InvalidRequest(f"{value!r} has an unknown quantity suffix {suffix!r}")
    return amount * _SUFFIXES[suffix]


def quantity_to_bytes(value: str | int) -> int:
    """A storage quantity in bytes, rounded up as Kubernetes rounds it; negative sizes are refused."""
    amount = parse_quantity(value)
    if amount < 0:
        raise InvalidRequest(f"storage size {value!r} is negative")
    return math.ceil(amount)


def gib_to_bytes(size_gib: int) -> int:
    return size_gib * GIB


def bytes_to_gib(size_bytes: int) -> int:
    """Whole GiB that hold ``size_bytes`` (rounded up), at least 1: Elastic SAN sizes are whole GiB."""
    if size_bytes < 0:
        raise InvalidRequest(f"size {size_bytes} bytes is negative")
    return max(MIN_VOLUME_GIB, -(-size_bytes // GIB))


_UNITS = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def sizes_in_one_unit(*sizes_bytes: int) -> list[str]:
    """Sizes written in the largest binary unit that holds all of them whole, else all in bytes."""
    for suffix, unit in _UNITS:
        if all(size % unit == 0 for size in sizes_bytes):
            return [f"{size // unit}{suffix}" for size in sizes_bytes]
    return [f"{size} bytes" for size in sizes_bytes]


def check_volume_size(size_gib: int) -> int:
    if not MIN_VOLUME_GIB <= size_gib <= MAX_VOLUME_GIB:
        raise InvalidRequest(
            f"an Elastic SAN volume must be {MIN_VOLUME_GIB} GiB to {MAX_VOLUME_GIB} GiB (64 TiB), "
            f"not {size_gib} GiB"
        )
    return size_gib


def restore_size_bytes(source_volume_size_gib: int) -> int:
    """The ``restoreSize`` to report for a snapshot: the size of the volume it was taken from."""
    if source_volume_size_gib < 0:
        raise InvalidRequest(f"source volume size {source_volume_size_gib} GiB is negative")
    return gib_to_bytes(source_volume_size_gib)


def creation_time_ns(created_at: datetime) -> int:
    """A VolumeSnapshotContent ``creationTime``: Unix time in nanoseconds (naive times are UTC)."""
    moment = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def same_region(a: str, b: str) -> bool:
    """Azure spells a region both ``westeurope`` and ``West Europe``."""
    return normalise_region(a) == normalise_region(b)


def normalise_region(region: str) -> str:
    return region.replace(" ", "").lower()


# --- snapshots ------------------------------------------------------------------------------


def snapshot_ready(snapshot: SnapshotInfo) -> bool:
    """True once Azure reports the snapshot ``Succeeded``; a failed snapshot is a final error."""
    state = snapshot.provisioning_state
    if state.lower() == SUCCEEDED.lower():
        return True
    if state.lower() in (FAILED.lower(), _CANCELED.lower()):
        raise SnapshotFailed(
            f"Elastic SAN snapshot {snapshot.id.arm_id} is in state {state}; delete the "
            "VolumeSnapshot and take a new one"
        )
    return False


# --- restore --------------------------------------------------------------------------------


def check_volume_mode(
    source_volume_mode: str | None,
    requested_volume_mode: str | None,
    content_annotations: Mapping[str, str] | None = None,
) -> None:
    """A restore keeps the snapshot's volume mode, as csi-provisioner checks it.

    ``source_volume_mode`` comes from ``VolumeSnapshotContent.spec.sourceVolumeMode`` (unknown
    when absent, then not checked); ``requested_volume_mode`` from the PVC (default
    Filesystem). A mode change needs the content annotation
    ``snapshot.storage.kubernetes.io/allow-volume-mode-change: "true"``.
    """
    wanted_mode = requested_volume_mode or FILESYSTEM
    for mode in (source_volume_mode, wanted_mode):
        if mode is not None and mode not in VOLUME_MODES:
            raise InvalidRequest(f"unknown volume mode {mode!r}; expected Filesystem or Block")
    allowed = (content_annotations or {}).get(ALLOW_VOLUME_MODE_CHANGE_ANNOTATION, "").lower() == "true"
    if source_volume_mode is not None and source_volume_mode != wanted_mode and not allowed:
        raise InvalidRequest(
            f"the snapshot was taken from a {source_volume_mode} volume but the claim asks for "
            f'{wanted_mode}; set annotation {ALLOW_VOLUME_MODE_CHANGE_ANNOTATION}: "true" on the '
            "VolumeSnapshotContent to allow the change"
        )


def check_volume_from_disk_snapshot(
    *, requested_gib: int, disk_snapshot: DiskSnapshotInfo, target_region: str
) -> None:
    """A volume can be made from a managed-disk snapshot in the same region once its copy is done."""
    if not same_region(disk_snapshot.location, target_region):
        raise InvalidRequest(
            f"managed-disk snapshot {disk_snapshot.id.arm_id} is in {disk_snapshot.location!r} but the "
            f"Elastic SAN is in {target_region!r}; both must be in the same region"
        )
    if disk_snapshot.size_gib is not None and requested_gib < disk_snapshot.size_gib:
        raise InvalidRequest(
            f"the new volume ({requested_gib} GiB) is smaller than managed-disk snapshot "
            f"{disk_snapshot.id.arm_id}; it needs at least {disk_snapshot.size_gib} GiB"
        )
    if not export_progress(disk_snapshot).done:
        raise Transient(
            f"managed-disk snapshot {disk_snapshot.id.arm_id} is still being copied "
            f"({disk_snapshot.completion_percent:.0f}%)"
        )


# --- export ---------------------------------------------------------------------------------


def check_export(*, source_volume_size_gib: int, san_region: str, target_region: str) -> None:
    """An Elastic SAN snapshot can be exported only in its SAN's region and only up to 4 TiB."""
    if source_volume_size_gib > MAX_EXPORT_GIB:
        raise InvalidRequest(
            f"the snapshot's volume is {source_volume_size_gib} GiB; snapshots of volumes larger than "
            f"{MAX_EXPORT_GIB} GiB (4 TiB) cannot be exported to a managed-disk snapshot"
        )
    if not same_region(san_region, target_region):
        raise InvalidRequest(
            f"the Elastic SAN is in {san_region!r}; an export must go to the same region, not "
            f"{target_region!r}"
        )


@dataclass(frozen=True)
class ExportProgress:
    done: bool
    percent: float


def export_progress(disk_snapshot: DiskSnapshotInfo) -> ExportProgress:
    """How far an export's copy is; a copy error or a failed snapshot is final."""
    if disk_snapshot.copy_error:
        raise SnapshotFailed(
            f"export to managed-disk snapshot {disk_snapshot.id.arm_id} failed: {disk_snapshot.copy_error}; "
            "delete the export and try again"
        )
    if disk_snapshot.provisioning_state.lower() in (FAILED.lower(), _CANCELED.lower()):
        raise SnapshotFailed(
            f"managed-disk snapshot {disk_snapshot.id.arm_id} is in state {disk_snapshot.provisioning_state}"
        )
    percent = max(0.0, min(100.0, disk_snapshot.completion_percent))
    succeeded = disk_snapshot.provisioning_state.lower() == SUCCEEDED.lower()
    return ExportProgress(done=succeeded and percent >= 100.0, percent=percent)


def next_progress_poll(elapsed: float, percent: float, *, minimum: float, maximum: float) -> float:
    """Seconds until the next look at a copy ``percent`` done after ``elapsed`` seconds.

    A copy that moves is looked at about halfway to its expected end, so polls get sparse
    for copies that take hours and dense near the end; one that has not moved yet backs
    off with its age. The wait never exceeds the copy's age either: an estimate from the
    first percent is wild. Always between ``minimum`` and ``maximum``.
    """
    estimate = elapsed / 2 if percent <= 0.0 else elapsed * (100.0 - min(percent, 100.0)) / percent / 2
    return max(minimum, min(maximum, estimate, elapsed))


# --- volume deletion ------------------------------------------------------------------------


def snapshots_of(volume: VolumeId, snapshots: Iterable[SnapshotInfo]) -> list[SnapshotInfo]:
    """The snapshots taken from ``volume``: exactly those a volume delete would take with it."""
    return [s for s in snapshots if s.source_volume == volume]


def check_volume_delete(
    volume: VolumeId, snapshots: Iterable[SnapshotInfo], *, delete_snapshots: bool
) -> list[SnapshotId]:
    """The snapshots that deleting ``volume`` destroys; refused unless that was decided explicitly."""
    doomed = [s.id for s in snapshots_of(volume, snapshots)]
    if doomed and not delete_snapshots:
        names = ", ".join(sorted(s.name for s in doomed))
        raise VolumeHasSnapshots(
            f"Elastic SAN volume {volume.arm_id} has {len(doomed)} snapshot(s) ({names}) that would be "
            "deleted with it; delete or export them first"
        )
    return doomed


def check_snapshot_count(volume: VolumeId, existing: int) -> None:
    """Azure keeps at most 200 snapshots per volume."""
    if existing >= MAX_SNAPSHOTS_PER_VOLUME:
        raise LimitReached(
            f"Elastic SAN volume {volume.arm_id} already has {existing} snapshots, the maximum is "
            f"{MAX_SNAPSHOTS_PER_VOLUME}; delete old snapshots first"
        )


def next_snapshot_at(
    creations: Iterable[float],
    now: float,
    *,
    limit: int = SNAPSHOT_RATE_LIMIT,
    window: float = SNAPSHOT_RATE_WINDOW,
) -> float:
    """The earliest moment (not before ``now``) at which one more snapshot of a volume fits its pace.

    ``creations`` are the moments of the volume's other creates on the clock of ``now``, past or
    reserved for later; a create counts for ``window`` seconds. No window may hold more than
    ``limit`` creates, so a full one stays full until the ``limit``-th latest leaves it.
    """
    recent = sorted(t for t in creations if now - t < window)
    if len(recent) < limit:
        return now
    return max(now, recent[-limit] + window)


def snapshot_rate_delay(recent_creations: Iterable[float], now: float) -> float:
    """Seconds to wait before the next snapshot of a volume fits the 7-per-5-minutes limit (0 if it fits)."""
    wait = next_snapshot_at(recent_creations, now) - now
    if wait <= 0:
        return 0.0
    # Whole milliseconds plus one, so that waiting exactly this long is never short by a rounding error.
    return math.ceil(wait * 1000 + 1) / 1000


__all__ = [
    "ALLOW_VOLUME_MODE_CHANGE_ANNOTATION",
    "BLOCK",
    "FILESYSTEM",
    "GIB",
    "MAX_EXPORT_GIB",
    "MAX_SNAPSHOTS_PER_VOLUME",
    "MAX_VOLUME_GIB",
    "MIN_VOLUME_GIB",
    "SNAPSHOT_RATE_LIMIT",
    "SNAPSHOT_RATE_WINDOW",
    "TIB_IN_GIB",
    "ExportProgress",
    "SnapshotFailed",
    "VolumeHasSnapshots",
    "bytes_to_gib",
    "check_export",
    "check_snapshot_count",
    "check_volume_delete",
    "check_volume_from_disk_snapshot",
    "check_volume_mode",
    "check_volume_size",
    "creation_time_ns",
    "export_progress",
    "gib_to_bytes",
    "next_snapshot_at",
    "normalise_region",
    "parse_quantity",
    "quantity_to_bytes",
    "same_region",
    "snapshot_rate_delay",
    "snapshot_ready",
    "snapshots_of",
]
