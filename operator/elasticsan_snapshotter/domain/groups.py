"""Rules of VolumeGroupSnapshots over Elastic SAN volumes.

Elastic SAN has no group snapshot: a group is one snapshot per member volume, each cut
by its own PUT. These rules keep such a set honest and recoverable:

* **Names.** The group handle is ``group-<24 hex>``, a hash of the group content's UID,
  and every member snapshot is named ``<group handle>-<16 hex>``, the hash of the member
  volume's ARM ID. A retry or a restart therefore finds (GET before PUT) what an earlier
  attempt cut, and the handle alone names the set: its members are exactly the snapshots
  whose name starts with ``<handle>-`` (Elastic SAN snapshots carry no tags, so the name
  is the only place to keep this). The handle is far below CSI's 128 bytes.
* **Budget.** Before any PUT, every member must have room: fewer than 200 snapshots and
  a free slot in the 7-per-5-minutes pace. A member at the cap refuses the whole group
  (a final error naming it); a member whose pace is full makes the whole group wait.
  Half a group is never cut on purpose.
* **Level.** Without a freeze each member is only crash-consistent, taken within a cut
  window; the class says which level it asks for (``domain.freeze`` holds the freeze rules),
  and only what is achieved is reported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.errors import InvalidRequest, SnapshotterError, Throttled
from elasticsan_snapshotter.domain.freeze import (
    BUDGET_PARAMETER,
    CRASH_CONSISTENT_PER_VOLUME,
    FILESYSTEM_CONSISTENT,
    LEVEL_PARAMETER,
    ON_UNPROVEN_PARAMETER,
    FreezePolicy,
)
from elasticsan_snapshotter.domain.identity import CSI_MAX_BYTES, SnapshotId, VolumeId
from elasticsan_snapshotter.domain.names import SNAPSHOT_NAME
from elasticsan_snapshotter.domain.parameters import InvalidParameter

GROUP_DRIVER_NAME = "iscsi.csi.k8s.io"
"""The default group driver: snapshot-controller requires the group class driver to equal the PV's."""

GROUP_HANDLE_PREFIX = "group-"
_GROUP_HASH_CHARS = 24
_MEMBER_HASH_CHARS = 16
_GROUP_HANDLE = re.compile(rf"{GROUP_HANDLE_PREFIX}[0-9a-f]{{{_GROUP_HASH_CHARS}}}")

PARAM_CONSISTENCY = LEVEL_PARAMETER

_RESERVED_PREFIX = "csi.storage.k8s.io/"
# Secret parameters snapshot-controller itself reads from a group class; we need no secrets.
_RESERVED_KNOWN = frozenset(
    f"{_RESERVED_PREFIX}{key}"
    for key in (
        "group-snapshotter-secret-name",
        "group-snapshotter-secret-namespace",
        "group-snapshotter-get-secret-name",
        "group-snapshotter-get-secret-namespace",
    )
)


class GroupBudgetExceeded(SnapshotterError):
    """A member volume is at its snapshot cap: the group is refused before anything is cut."""

    reason = "GroupBudgetExceeded"


class GroupPaced(Throttled):
    """A member volume's 7-per-5-minutes pace is full: the whole group waits for its slot."""

    reason = "GroupWaitingForBudget"


class GroupMemberFailed(SnapshotterError):
    """A member failed for good after others were cut; the others are deleted again."""

    reason = "GroupMemberFailed"


# --- names and handles -----------------------------------------------------------------------


def _hex(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def group_handle(group_content_uid: str) -> str:
    """The handle of the group cut for the VolumeGroupSnapshotContent with this UID."""
    uid = group_content_uid.strip().lower()
    if not uid:
        raise InvalidRequest("a VolumeGroupSnapshotContent without a UID cannot name a group")
    return GROUP_HANDLE_PREFIX + _hex(uid, _GROUP_HASH_CHARS)


def is_group_handle(handle: str) -> bool:
    """True for handles this operator makes (``group-<24 hex>``)."""
    return bool(_GROUP_HANDLE.fullmatch(handle))


def member_snapshot_name(handle: str, volume: VolumeId) -> str:
    """The Elastic SAN snapshot name of ``volume``'s member in the group ``handle``."""
    if not is_group_handle(handle):
        raise InvalidRequest(f"{handle!r} is not a group handle of this operator")
    return SNAPSHOT_NAME.check(f"{handle}-{_hex(volume.arm_id.lower(), _MEMBER_HASH_CHARS)}")


def member_snapshot(handle: str, volume: VolumeId) -> SnapshotId:
    """The member snapshot lives in its volume's volume group, as every Elastic SAN snapshot does."""
    return volume.volume_group.snapshot(member_snapshot_name(handle, volume))


def is_member(handle: str, snapshot: SnapshotId) -> bool:
    """True when ``snapshot`` belongs to the group ``handle``: its name carries the handle."""
    name = snapshot.name.lower()
    prefix = f"{handle.lower()}-"
    return name.startswith(prefix) and len(name) == len(prefix) + _MEMBER_HASH_CHARS


def check_imported_group(handle: str, members: Sequence[SnapshotId]) -> None:
    """A pre-provisioned group: a handle CSI can carry, at least one member, members that belong."""
    if not handle or len(handle.encode()) > CSI_MAX_BYTES:
        raise InvalidRequest(f"the group handle {handle!r} must be 1 to {CSI_MAX_BYTES} bytes")
    if not members:
        raise InvalidRequest("source.groupSnapshotHandles.volumeSnapshotHandles lists no snapshot")
    if is_group_handle(handle):
        strangers = sorted(s.name for s in members if not is_member(handle, s))
        if strangers:
            raise InvalidRequest(
                f"snapshot(s) {', '.join(strangers)} are not members of group {handle}: member names "
                f"start with '{handle}-'"
            )


# --- class parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupClassParameters:
    freeze: FreezePolicy = field(default_factory=FreezePolicy)

    @property
    def consistency(self) -> str:
        """The level the class asks for; the level achieved is reported separately."""
        return self.freeze.level


_KNOWN = (PARAM_CONSISTENCY, BUDGET_PARAMETER, ON_UNPROVEN_PARAMETER)


def parse_group_class_parameters(parameters: Mapping[str, str]) -> GroupClassParameters:
    """The VolumeGroupSnapshotClass parameters this operator knows; anything else is refused."""
    unknown = sorted(key for key in parameters if key not in _KNOWN and key not in _RESERVED_KNOWN)
    if unknown:
        raise InvalidParameter(
            f"unknown VolumeGroupSnapshotClass parameter(s) {', '.join(unknown)}; the parameters are "
            f"{', '.join(_KNOWN)}"
        )
    return GroupClassParameters(freeze=FreezePolicy.from_parameters(parameters))


# --- budget ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberBudget:
    """What Azure says about one member volume just before the group is cut."""

    volume: VolumeId
    snapshot_count: int
    """Snapshots the volume has, this group's own member not counted."""
    recent_creations: tuple[float, ...]
    """Creation times (Unix seconds) of the volume's other snapshots."""
    cut: bool = False
    """This group's member exists already (an earlier attempt cut it)."""


def member_budget(
    handle: str, volume: VolumeId, snapshots: Sequence[tuple[SnapshotId, datetime | None]]
) -> MemberBudget:
    """The budget of ``volume`` from its snapshots (ID and creation time), as Azure lists them."""
    own = member_snapshot(handle, volume)
    others = [(s, at) for s, at in snapshots if s != own]
    return MemberBudget(
        volume=volume,
        snapshot_count=len(others),
        recent_creations=tuple(at.timestamp() for _, at in others if at is not None),
        cut=len(others) < len(snapshots),
    )


def check_group_budget(budgets: Sequence[MemberBudget], now: float) -> None:
    """Refuse the group unless every member still to be cut has room now (all or nothing).

    A member at the 200 cap is a final refusal; a full pace is a wait (``GroupPaced``, with the
    longest member's delay), since it clears by itself within five minutes.
    """
    pending = [b for b in budgets if not b.cut]
    full = [b for b in pending if b.snapshot_count >= decisions.MAX_SNAPSHOTS_PER_VOLUME]
    if full:
        listed = ", ".join(f"{b.volume.arm_id} ({b.snapshot_count} snapshots)" for b in full)
        raise GroupBudgetExceeded(
            f"member volume(s) at the Elastic SAN limit of {decisions.MAX_SNAPSHOTS_PER_VOLUME} snapshots: "
            f"{listed}; nothing was cut. Delete old snapshots of those volumes, then delete and "
            "re-create the VolumeGroupSnapshot"
        )
    delays = {b.volume.arm_id: decisions.snapshot_rate_delay(b.recent_creations, now) for b in pending}
    waiting = {volume: delay for volume, delay in delays.items() if delay > 0}
    if waiting:
        longest = max(waiting.values())
        raise GroupPaced(
            f"member volume(s) {', '.join(sorted(waiting))} already had {decisions.SNAPSHOT_RATE_LIMIT} "
            f"snapshots in the last {decisions.SNAPSHOT_RATE_WINDOW:.0f} s; the whole group waits "
            f"{longest:.0f} s instead of cutting part of it",
            retry_after=longest,
        )


# --- what was achieved -----------------------------------------------------------------------


def cut_window_seconds(accepted_at: Iterable[datetime]) -> float:
    """Seconds from the first member's accepted PUT to the last one's (0 for one member)."""
    times = sorted(accepted_at)
    if not times:
        return 0.0
    return max(0.0, (times[-1] - times[0]).total_seconds())


__all__ = [
    "CRASH_CONSISTENT_PER_VOLUME",
    "FILESYSTEM_CONSISTENT",
    "GROUP_DRIVER_NAME",
    "GROUP_HANDLE_PREFIX",
    "PARAM_CONSISTENCY",
    "GroupBudgetExceeded",
    "GroupClassParameters",
    "GroupMemberFailed",
    "GroupPaced",
    "MemberBudget",
    "check_group_budget",
    "check_imported_group",
    "cut_window_seconds",
    "group_handle",
    "is_group_handle",
    "is_member",
    "member_budget",
    "member_snapshot",
    "member_snapshot_name",
    "parse_group_class_parameters",
]
