"""When a snapshot schedule fires: cron or ``@every`` ticks in an IANA time zone.

Cron expressions are evaluated by ``cronsim`` (it follows Debian cron, DST
quirks included) with zones from ``zoneinfo`` (``tzdata`` where the system has
none); nothing here parses cron fields itself. ``@every <duration>`` ticks are
anchored to the Unix epoch, so every replica and every restart computes the
same ticks. A target fires at its tick plus a jitter that is stable for the
pair (schedule, target), so a thousand claims on one schedule are spread out.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from elasticsan_snapshotter.domain.errors import InvalidRequest

MINIMUM_INTERVAL = timedelta(minutes=1)
"""The shortest ``@every`` interval in production; a setting lowers it for tests."""
MAX_JITTER = timedelta(minutes=5)
"""The widest default jitter window, whatever the interval."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """A Go-style duration (``90s``, ``1h30m``), with ``d`` and ``w`` for days and weeks."""
    cleaned = text.strip()
    if not cleaned or _DURATION_PART.sub("", cleaned):
        raise InvalidRequest(f"{what} {text!r} is not a duration such as 30s, 15m, 1h30m, 7d or 2w")
    total = timedelta()
    for amount, unit in _DURATION_PART.findall(cleaned):
        total += int(amount) * _UNITS[unit]
    if total <= timedelta():
        raise InvalidRequest(f"{what} {text!r} must be longer than zero")
    return total


def time_zone(name: str | None) -> ZoneInfo:
    """An IANA zone (default UTC); an unknown name is a final error."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"timeZone {name!r} is not a known IANA time zone") from exc


@dataclass(frozen=True)
class Schedule:
    """Parsed ``spec.schedule``: a 5-field cron expression or a fixed interval."""

    text: str
    cron: str | None = None
    every: timedelta | None = None

    @classmethod
    def parse(cls, text: str, *, minimum: timedelta = MINIMUM_INTERVAL) -> Schedule:
        cleaned = " ".join(text.split())
        lowered = cleaned.lower()
        if lowered.startswith("@every"):
            interval = parse_duration(cleaned[len("@every") :], "@every interval")
            if interval < minimum:
                raise InvalidRequest(
                    f"schedule {text!r} is more often than the minimum interval of {format_duration(minimum)}"
                )
            return cls(text=cleaned, every=interval)
        expression = MACROS.get(lowered, cleaned)
        if expression.startswith("@"):
            raise InvalidRequest(
                f"schedule {text!r}: unknown macro; use @hourly, @daily, @weekly, @monthly, @yearly or @every"
            )
        if len(expression.split()) != 5:
            raise InvalidRequest(f"schedule {text!r} must have 5 cron fields (minute hour day month weekday)")
        try:
            next(iter(CronSim(expression, datetime(2000, 1, 1))))
        except CronSimError as exc:
            raise InvalidRequest(f"schedule {text!r} is not a valid cron expression: {exc}") from exc
        except StopIteration:
            raise InvalidRequest(f"schedule {text!r} never fires") from None
        return cls(text=cleaned, cron=expression)

    def ticks_after(self, after: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """Every tick strictly after ``after``, in UTC, in order."""
        if self.every is not None:
            step = self.every
            count = math.floor((after - EPOCH) / step) + 1
            while True:
                yield EPOCH + count * step
                count += 1
        assert self.cron is not None
        local = after.astimezone(zone)
        for tick in CronSim(self.cron, local):
            if tick.astimezone(UTC) > after:
                yield tick.astimezone(UTC)

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime:
        return next(self.ticks_after(after, zone))

    def latest_at_or_before(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """The newest tick at or before ``now`` (None when the schedule never fired before)."""
        if self.every is not None:
            return EPOCH + math.floor((now - EPOCH) / self.every) * self.every
        assert self.cron is not None
        try:
            tick = next(iter(CronSim(self.cron, now.astimezone(zone) + timedelta(seconds=1), reverse=True)))
        except StopIteration:
            return None
        return tick.astimezone(UTC)

    def ticks_between(
        self, after: datetime, until: datetime, zone: ZoneInfo, limit: int = 10_000
    ) -> list[datetime]:
        """Ticks in ``(after, until]``, at most ``limit`` of them (the oldest first)."""
        out: list[datetime] = []
        for tick in islice(self.ticks_after(after, zone), limit):
            if tick > until:
                break
            out.append(tick)
        return out


def shortest_gap(schedule: Schedule, zone: ZoneInfo, start: datetime, samples: int = 200) -> timedelta:
    """The shortest time between two ticks (exact for ``@every``, sampled for cron)."""
    if schedule.every is not None:
        return schedule.every
    ticks = list(islice(schedule.ticks_after(start, zone), samples))
    return min((b - a for a, b in pairwise(ticks)), default=timedelta(days=365))


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{value.total_seconds():g}s"


def jitter_window(interval: timedelta, requested: timedelta | None = None) -> timedelta:
    """How far targets are spread after a tick: as asked, else a tenth of the interval, at most 5 minutes.

    Never half the interval or more, so a target's run always lands before the next tick.
    """
    ceiling = interval / 2
    wanted = requested if requested is not None else min(interval / 10, MAX_JITTER)
    return max(timedelta(), min(wanted, ceiling - timedelta(microseconds=1)))


def jitter(schedule_uid: str, target: str, window: timedelta) -> timedelta:
    """A stable offset in ``[0, window)`` for this target: the same on every replica and restart."""
    if window <= timedelta():
        return timedelta()
    digest = hashlib.sha256(f"{schedule_uid}\x00{target}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(milliseconds=math.floor(fraction * window.total_seconds() * 1000))


def run_name(schedule: str, target: str, tick: datetime, schedule_uid: str) -> str:
    """The object a run creates for one target at one tick: the same name on every retry and restart.

    ``<schedule>-<target>-<UTC tick>-<hash>``, at most 63 characters: readable parts are cut
    short, and the hash of (schedule UID, target, tick) keeps cut names apart.
    """
    stamp = tick.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(f"{schedule_uid}\x00{target}\x00{stamp}".encode()).hexdigest()[:8]
    readable = f"{_label(schedule, 18)}-{_label(target, 18)}"
    return f"{readable}-{stamp}-{digest}"


def _label(text: str, size: int) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())[:size].strip("-")
    return cleaned or "x"


RUN = "Run"
WAIT = "Wait"
SKIP = "Skip"


@dataclass(frozen=True)
class Verdict:
    """What to do for one target at one tick."""

    action: str
    due: datetime
    reason: str = ""


def judge(
    due: datetime, now: datetime, deadline: timedelta | None, *, ahead: timedelta = timedelta()
) -> Verdict:
    """Run when due (or within ``ahead`` of it); skip (never bunch up) when later than the deadline.

    ``ahead`` lets a reconcile that runs anyway take targets due just after it, so that batching
    runs pulls them forward, never past their due time (and so past the jitter window).
    """
    if now + ahead < due:
        return Verdict(WAIT, due)
    if deadline is not None and now - due > deadline:
        late = format_duration(now - due)
        return Verdict(
            SKIP, due, f"missed its starting deadline of {format_duration(deadline)} by running {late} late"
        )
    return Verdict(RUN, due)


__all__ = [
    "MACROS",
    "MINIMUM_INTERVAL",
    "RUN",
    "SKIP",
    "WAIT",
    "Schedule",
    "Verdict",
    "format_duration",
    "jitter",
    "jitter_window",
    "judge",
    "parse_duration",
    "run_name",
    "shortest_gap",
    "time_zone",
]
