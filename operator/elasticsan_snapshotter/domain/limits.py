"""Elastic SAN's per-volume limits, as arithmetic on schedules.

Azure takes at most 7 new snapshots per volume in any 5 minutes and holds at
most 200 per volume. For each schedule and volume two numbers follow from the
spec alone:

* its *rate*: the most ticks in any window (5 minutes), found by sliding the
  window over the schedule's real ticks in its time zone;
* its *steady count*: the most snapshots it can hold at once: what retention
  keeps (count rules, capped by the ticks within ``maxAge``, never below
  ``minKeepReady``), plus ``keepFailed``, plus one run in flight, plus one
  source held past retention by a running export when exports are on.

A schedule whose own numbers exceed a limit can never fit and is refused. On a
volume shared by several schedules, and with snapshots others took, the sums
must stay within the limits with headroom; a schedule pushed over reports
pressure and is paced by the operator's per-volume limiter instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from elasticsan_snapshotter.domain.retention import Policy
from elasticsan_snapshotter.domain.schedule import Schedule, format_duration

SAMPLE_TICKS = 3000
"""Ticks examined for cron schedules: over two days even for every-minute expressions."""


@dataclass(frozen=True)
class VolumeLimits:
    per_window: int = 7
    window: timedelta = timedelta(minutes=5)
    max_snapshots: int = 200
    headroom: int = 20
    """Snapshots left free for restores, tests and hands: the budget is ``max_snapshots - headroom``."""

    @property
    def budget(self) -> int:
        return self.max_snapshots - self.headroom


def most_ticks_within(schedule: Schedule, zone: ZoneInfo, span: timedelta, start: datetime) -> int:
    """The most ticks in any half-open interval of length ``span``."""
    if schedule.every is not None:
        whole, rest = divmod(span, schedule.every)
        return int(whole) + (1 if rest else 0)
    ticks = list(islice(schedule.ticks_after(start, zone), SAMPLE_TICKS))
    best, first = 0, 0
    for last, tick in enumerate(ticks):
        while tick - ticks[first] >= span:
            first += 1
        best = max(best, last - first + 1)
    return best


@dataclass(frozen=True)
class Demand:
    """What one schedule asks of each volume it targets."""

    schedule: str
    rate: int
    steady: int | None
    """None: retention never deletes a ready snapshot, so the count grows without bound."""


def demand(
    name: str,
    schedule: Schedule,
    zone: ZoneInfo,
    policy: Policy,
    *,
    exports: bool,
    limits: VolumeLimits,
    start: datetime,
) -> Demand:
    rate = most_ticks_within(schedule, zone, limits.window, start)
    ready: int | None = policy.count_bound()
    if policy.max_age is not None:
        within = most_ticks_within(schedule, zone, policy.max_age, start) + 1
        ready = within if ready is None else min(ready, within)
    if ready is None:
        return Demand(name, rate, None)
    steady = max(ready, policy.min_keep_ready) + policy.keep_failed + 1 + (1 if exports else 0)
    return Demand(name, rate, steady)


def never_fits(d: Demand, limits: VolumeLimits) -> str:
    """Why a schedule cannot fit even alone on a volume; empty when it can."""
    window = format_duration(limits.window)
    if d.rate > limits.per_window:
        return (
            f"it takes up to {d.rate} snapshots per volume in {window}; Elastic SAN allows "
            f"{limits.per_window}"
        )
    if d.steady is None:
        return (
            "its retention never deletes a ready snapshot (set keepLast, maxAge or a tier), so it would "
            f"reach Elastic SAN's {limits.max_snapshots} snapshots per volume"
        )
    if d.steady > limits.budget:
        return (
            f"it holds up to {d.steady} snapshots per volume; the budget is {limits.budget} "
            f"({limits.max_snapshots} per volume less {limits.headroom} of headroom)"
        )
    return ""


@dataclass(frozen=True)
class Pressure:
    rate: int
    steady: int
    message: str = ""


def shared(demands: Iterable[Demand], others: int, limits: VolumeLimits) -> Pressure:
    """The sums on one volume over every schedule that targets it, and snapshots others took."""
    listed = list(demands)
    rate = sum(d.rate for d in listed)
    steady = sum(d.steady or limits.max_snapshots for d in listed) + others
    problems: list[str] = []
    if rate > limits.per_window:
        names = ", ".join(sorted(d.schedule for d in listed))
        problems.append(
            f"schedules {names} take up to {rate} snapshots in {format_duration(limits.window)} "
            f"(limit {limits.per_window}); runs are paced"
        )
    if steady > limits.budget:
        problems.append(
            f"up to {steady} snapshots held ({others} taken by others), over the budget of {limits.budget}"
        )
    return Pressure(rate, steady, "; ".join(problems))


__all__ = [
    "SAMPLE_TICKS",
    "Demand",
    "Pressure",
    "VolumeLimits",
    "demand",
    "most_ticks_within",
    "never_fits",
    "shared",
]
