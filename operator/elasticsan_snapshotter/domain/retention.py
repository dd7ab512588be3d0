"""Which of a schedule's snapshots (or exports) to delete, never losing the last good copy.

The order, applied to the copies of one target that this schedule made:

1. copies still being made are never touched;
2. failed copies never count as good ones: the newest ``keepFailed`` are kept for
   inspection and older ones are deleted;
3. among ready copies, the count rules select what to keep: the newest ``keepLast``,
   and for each tier (hourly, daily, weekly, monthly) the newest copy of each of the
   last N periods that have one, periods taken in the schedule's time zone; with no
   count rule at all every ready copy is selected;
4. ``maxAge`` then drops selected copies older than that;
5. the newest ``minKeepReady`` ready copies are kept whatever 3 and 4 say;
6. a copy chosen for deletion that is in use (the source of a restore or an export,
   labelled keep, a group member) is kept and reported instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from elasticsan_snapshotter.domain.errors import InvalidRequest

READY = "Ready"
FAILED = "Failed"
IN_PROGRESS = "InProgress"

TIERS = ("hourly", "daily", "weekly", "monthly")


@dataclass(frozen=True)
class Policy:
    keep_last: int | None = None
    max_age: timedelta | None = None
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    min_keep_ready: int = 1
    keep_failed: int = 1

    def __post_init__(self) -> None:
        counts = {
            "keepLast": self.keep_last or 0,
            "hourly": self.hourly,
            "daily": self.daily,
            "weekly": self.weekly,
            "monthly": self.monthly,
            "minKeepReady": self.min_keep_ready,
            "keepFailed": self.keep_failed,
        }
        for name, value in counts.items():
            if value < 0:
                raise InvalidRequest(f"retention.{name} must not be negative, not {value}")
        if self.max_age is not None and self.max_age <= timedelta():
            raise InvalidRequest("retention.maxAge must be longer than zero")

    @property
    def has_count_rule(self) -> bool:
        return bool(self.keep_last) or any(getattr(self, tier) for tier in TIERS)

    @property
    def bounded(self) -> bool:
        """Whether retention ever deletes a ready copy (otherwise they pile up to the volume limit)."""
        return self.has_count_rule or self.max_age is not None

    def count_bound(self) -> int | None:
        """The most ready copies the count rules can keep (None: no count rule)."""
        if not self.has_count_rule:
            return None
        return (self.keep_last or 0) + self.hourly + self.daily + self.weekly + self.monthly


@dataclass(frozen=True)
class Copy:
    """One snapshot or export a schedule made, as retention sees it."""

    name: str
    time: datetime
    """When the copy was taken (its scheduled tick), timezone-aware."""
    state: str
    in_use: str = ""
    """Why the copy must not be deleted now; empty when nothing holds it."""


@dataclass(frozen=True)
class Plan:
    delete: tuple[str, ...] = ()
    blocked: tuple[tuple[str, str], ...] = ()
    """Copies retention would delete but may not: (name, why)."""
    kept_ready: tuple[str, ...] = ()
    """Ready copies that stay, newest first."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each deleted copy goes."""


def _period(tier: str, when: datetime) -> tuple[int, ...]:
    if tier == "hourly":
        return (when.year, when.month, when.day, when.hour)
    if tier == "daily":
        return (when.year, when.month, when.day)
    if tier == "weekly":
        iso = when.isocalendar()
        return (iso.year, iso.week)
    return (when.year, when.month)


def _tier_picks(ready: Sequence[Copy], tier: str, count: int, zone: ZoneInfo) -> set[str]:
    """The newest copy of each of the newest ``count`` periods that have one."""
    picks: set[str] = set()
    seen: set[tuple[int, ...]] = set()
    for copy in ready:  # newest first
        period = _period(tier, copy.time.astimezone(zone))
        if period in seen:
            continue
        if len(seen) == count:
            break
        seen.add(period)
        picks.add(copy.name)
    return picks


def plan(copies: Iterable[Copy], policy: Policy, *, now: datetime, zone: ZoneInfo) -> Plan:
    """What retention deletes among the copies of one target."""
    ordered = sorted(copies, key=lambda c: (c.time, c.name), reverse=True)
    ready = [c for c in ordered if c.state == READY]
    failed = [c for c in ordered if c.state == FAILED]

    selected: set[str]
    if policy.has_count_rule:
        selected = {c.name for c in ready[: policy.keep_last or 0]}
        for tier in TIERS:
            count = int(getattr(policy, tier))
            if count:
                selected |= _tier_picks(ready, tier, count, zone)
    else:
        selected = {c.name for c in ready}
    if policy.max_age is not None:
        oldest = now - policy.max_age
        selected = {c.name for c in ready if c.name in selected and c.time >= oldest}
    selected |= {c.name for c in ready[: policy.min_keep_ready]}

    doomed: list[tuple[Copy, str]] = [
        (c, "beyond the retention rules") for c in ready if c.name not in selected
    ]
    doomed += [
        (c, f"older than the newest {policy.keep_failed} failed") for c in failed[policy.keep_failed :]
    ]

    delete: list[str] = []
    blocked: list[tuple[str, str]] = []
    reasons: dict[str, str] = {}
    for copy, why in doomed:
        if copy.in_use:
            blocked.append((copy.name, copy.in_use))
        else:
            delete.append(copy.name)
            reasons[copy.name] = why
    kept = tuple(c.name for c in ready if c.name in selected or c.in_use)
    return Plan(delete=tuple(delete), blocked=tuple(blocked), kept_ready=kept, reasons=reasons)


# --- in use ---------------------------------------------------------------------------------

KEEP_LABEL_VALUE = "true"


@dataclass(frozen=True)
class Holders:
    """What holds snapshots in a namespace, gathered by the adapter from the objects it watches."""

    pending_restores: frozenset[str] = frozenset()
    """Names of VolumeSnapshots that a claim not yet Bound names as its dataSource."""
    running_exports: frozenset[str] = frozenset()
    """Names of VolumeSnapshots that an unfinished export reads from."""


def in_use_reason(
    name: str,
    *,
    keep_label: str | None,
    group: str | None,
    holders: Holders,
) -> str:
    """Why a snapshot must not be deleted now; empty when nothing holds it."""
    if (keep_label or "").lower() == KEEP_LABEL_VALUE:
        return "labelled keep"
    if name in holders.pending_restores:
        return "the dataSource of a claim that is not Bound yet"
    if name in holders.running_exports:
        return "the source of an export that has not finished"
    if group:
        return f"a member of group snapshot {group} (delete the group instead)"
    return ""


def group_in_use_reason(
    *, keep_label: str | None, members: Iterable[tuple[str, str | None]], holders: Holders
) -> str:
    """Why a group snapshot must not be deleted now (deleting it deletes every member).

    ``members`` are the group's member snapshots as (name, keep label): the group is held
    when it is labelled keep, or when any member is.
    """
    if (keep_label or "").lower() == KEEP_LABEL_VALUE:
        return "labelled keep"
    for name, member_keep in sorted(members):
        why = in_use_reason(name, keep_label=member_keep, group=None, holders=holders)
        if why:
            return f"member {name} is {why}"
    return ""


def policy_from_spec(spec: dict[str, object], parse_age: Callable[[str, str], timedelta]) -> Policy:
    """A policy from a ``retention`` mapping of the CRD (camelCase keys)."""

    def count(key: str, default: int = 0) -> int:
        value = spec.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"retention.{key} must be a whole number, not {value!r}")
        return value

    age = spec.get("maxAge")
    keep_last = spec.get("keepLast")
    return Policy(
        keep_last=count("keepLast") if keep_last is not None else None,
        max_age=parse_age(str(age), "retention.maxAge") if age else None,
        hourly=count("hourly"),
        daily=count("daily"),
        weekly=count("weekly"),
        monthly=count("monthly"),
        min_keep_ready=count("minKeepReady", 1),
        keep_failed=count("keepFailed", 1),
    )


__all__ = [
    "FAILED",
    "IN_PROGRESS",
    "KEEP_LABEL_VALUE",
    "READY",
    "TIERS",
    "Copy",
    "Holders",
    "Plan",
    "Policy",
    "group_in_use_reason",
    "in_use_reason",
    "plan",
    "policy_from_spec",
]
