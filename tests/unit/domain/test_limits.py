"""The limits arithmetic: per-volume rate in a window and the steady snapshot count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain.limits import VolumeLimits, demand, most_ticks_within, never_fits, shared
from elasticsan_snapshotter.domain.retention import Policy
from elasticsan_snapshotter.domain.schedule import Schedule, time_zone

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 1, tzinfo=UTC)
UTC_ZONE = time_zone("UTC")
FIVE_MINUTES = timedelta(minutes=5)
LIMITS = VolumeLimits()
ANY_INTERVAL = timedelta(seconds=1)


def rate(text: str, zone: str = "UTC") -> int:
    schedule = Schedule.parse(text, minimum=ANY_INTERVAL)
    return most_ticks_within(schedule, time_zone(zone), FIVE_MINUTES, START)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@every 1m", 5),
        ("@every 2m", 3),
        ("@every 5m", 1),
        ("@every 40s", 8),
        ("* * * * *", 5),
        ("*/2 * * * *", 3),
        ("0,1,2 * * * *", 3),
        ("58,59 * * * *", 2),
        ("59 * * * *", 1),
        ("@hourly", 1),
    ],
)
def test_most_ticks_in_five_minutes(text: str, expected: int) -> None:
    assert rate(text) == expected


def test_a_burst_across_the_hour_is_found() -> None:
    # 58, 59 and then 0, 1, 2 of the next hour: five within five minutes.
    assert rate("0,1,2,58,59 * * * *") == 5


@given(st.integers(min_value=10, max_value=3600))
def test_every_rate_matches_a_brute_force_count(seconds: int) -> None:
    schedule = Schedule.parse(f"@every {seconds}s", minimum=ANY_INTERVAL)
    ticks = schedule.ticks_between(START, START + timedelta(seconds=max(1800, 3 * seconds)), UTC_ZONE)
    brute = max(sum(1 for u in ticks if t <= u < t + FIVE_MINUTES) for t in ticks)
    assert most_ticks_within(schedule, UTC_ZONE, FIVE_MINUTES, START) == brute


def test_steady_count_of_hourly_tiers() -> None:
    # The documented example: hourly, 24 hourlies, 7 dailies, 4 weeklies, exports on.
    policy = Policy(keep_last=24, daily=7, weekly=4)
    d = demand(
        "ns/hourly", Schedule.parse("@hourly"), UTC_ZONE, policy, exports=True, limits=LIMITS, start=START
    )
    assert d.rate == 1
    assert d.steady == 24 + 7 + 4 + 1 + 1 + 1  # kept + keepFailed + one in flight + one held by an export
    assert never_fits(d, LIMITS) == ""


def test_max_age_bounds_the_count() -> None:
    policy = Policy(max_age=timedelta(hours=6))
    d = demand("ns/s", Schedule.parse("@hourly"), UTC_ZONE, policy, exports=False, limits=LIMITS, start=START)
    assert d.steady == 7 + 1 + 1
    policy = Policy(keep_last=100, max_age=timedelta(hours=2))
    d = demand("ns/s", Schedule.parse("@hourly"), UTC_ZONE, policy, exports=False, limits=LIMITS, start=START)
    assert d.steady == 3 + 1 + 1


def test_min_keep_ready_raises_the_count() -> None:
    policy = Policy(max_age=timedelta(hours=1), min_keep_ready=10)
    d = demand("ns/s", Schedule.parse("@daily"), UTC_ZONE, policy, exports=False, limits=LIMITS, start=START)
    assert d.steady == 10 + 1 + 1


def test_schedules_that_can_never_fit() -> None:
    fast = Schedule.parse("@every 30s", minimum=ANY_INTERVAL)
    d = demand("ns/fast", fast, UTC_ZONE, Policy(keep_last=3), exports=False, limits=LIMITS, start=START)
    assert "10 snapshots per volume in 5m" in never_fits(d, LIMITS)
    hoarder = demand(
        "ns/h",
        Schedule.parse("@hourly"),
        UTC_ZONE,
        Policy(keep_last=190),
        exports=False,
        limits=LIMITS,
        start=START,
    )
    assert "budget is 180" in never_fits(hoarder, LIMITS)
    endless = demand(
        "ns/e", Schedule.parse("@hourly"), UTC_ZONE, Policy(), exports=False, limits=LIMITS, start=START
    )
    assert endless.steady is None
    assert "never deletes" in never_fits(endless, LIMITS)


def test_schedules_sharing_a_volume_report_pressure() -> None:
    every = Schedule.parse("@every 1m")
    one = demand("ns/a", every, UTC_ZONE, Policy(keep_last=5), exports=False, limits=LIMITS, start=START)
    two = demand("ns/b", every, UTC_ZONE, Policy(keep_last=5), exports=False, limits=LIMITS, start=START)
    assert never_fits(one, LIMITS) == ""
    assert never_fits(two, LIMITS) == ""
    assert shared([one], 0, LIMITS).message == ""
    together = shared([one, two], 0, LIMITS)
    assert together.rate == 10
    assert "ns/a, ns/b take up to 10 snapshots in 5m (limit 7)" in together.message


def test_snapshots_taken_by_others_count() -> None:
    d = demand(
        "ns/a",
        Schedule.parse("@hourly"),
        UTC_ZONE,
        Policy(keep_last=50),
        exports=False,
        limits=LIMITS,
        start=START,
    )
    assert d.steady == 52
    assert shared([d], 128, LIMITS).message == ""
    over = shared([d], 129, LIMITS)
    assert over.steady == 181
    assert "129 taken by others" in over.message


def test_limits_follow_the_configured_window() -> None:
    limits = VolumeLimits(per_window=7, window=timedelta(seconds=30))
    every = Schedule.parse("@every 5s", minimum=ANY_INTERVAL)
    d = demand("ns/a", every, UTC_ZONE, Policy(keep_last=3), exports=False, limits=limits, start=START)
    assert d.rate == 6
    assert never_fits(d, limits) == ""
