"""Schedule evaluation: cron and @every ticks in a time zone, deadlines, jitter and run names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.schedule import (
    RUN,
    SKIP,
    WAIT,
    Schedule,
    jitter,
    jitter_window,
    judge,
    parse_duration,
    run_name,
    time_zone,
)

pytestmark = pytest.mark.unit

BERLIN = time_zone("Europe/Berlin")
NEW_YORK = time_zone("America/New_York")
UTC_ZONE = time_zone("UTC")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("  15   3 * * 1-5 ", "15 3 * * 1-5"),
    ],
)
def test_cron_and_macros_parse(text: str, cron: str) -> None:
    assert Schedule.parse(text).cron == cron


@pytest.mark.parametrize(
    "text",
    ["61 * * * *", "* * * *", "0 0 * * * *", "@fortnightly", "every hour", "0 0 30 2 *", ""],
)
def test_invalid_cron_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        Schedule.parse(text)


def test_every_respects_the_minimum_unless_lowered() -> None:
    with pytest.raises(InvalidRequest, match="minimum interval of 1m"):
        Schedule.parse("@every 1s")
    with pytest.raises(InvalidRequest, match="minimum"):
        Schedule.parse("@every 59s")
    assert Schedule.parse("@every 1m").every == timedelta(minutes=1)
    assert Schedule.parse("@every 1s", minimum=timedelta(seconds=1)).every == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("text", "value"),
    [("90s", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("7d", timedelta(days=7))],
)
def test_durations(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "5", "1.5h", "-1h", "0s", "1y", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_duration(text)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="Mars/Olympus"):
        time_zone("Mars/Olympus")
    assert time_zone(None).key == "UTC"


# --- ticks -----------------------------------------------------------------------------------


def test_spring_forward_runs_a_skipped_local_time_once() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: Debian cron runs it at 03:00 CEST.
    nightly = Schedule.parse("30 2 * * *")
    ticks = nightly.ticks_between(at(2026, 3, 27), at(2026, 3, 31), BERLIN)
    assert ticks == [
        at(2026, 3, 27, 1, 30),
        at(2026, 3, 28, 1, 30),
        at(2026, 3, 29, 1, 0),
        at(2026, 3, 30, 0, 30),
    ]


def test_fall_back_runs_a_repeated_local_time_once() -> None:
    # 01:30 happens twice in New York on 1 November 2026; the schedule fires once.
    nightly = Schedule.parse("30 1 * * *")
    ticks = nightly.ticks_between(at(2026, 10, 31), at(2026, 11, 3), NEW_YORK)
    assert ticks == [at(2026, 10, 31, 5, 30), at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)]


def test_hourly_across_fall_back_fires_every_real_hour() -> None:
    hourly = Schedule.parse("@hourly")
    ticks = hourly.ticks_between(at(2026, 11, 1, 3, 30), at(2026, 11, 1, 8, 30), NEW_YORK)
    assert ticks == [at(2026, 11, 1, h) for h in (4, 5, 6, 7, 8)]


def test_daily_follows_local_midnight_in_the_zone() -> None:
    daily = Schedule.parse("@daily")
    assert daily.next_after(at(2026, 7, 1, 12), BERLIN) == at(2026, 7, 1, 22)
    assert daily.next_after(at(2026, 1, 1, 12), BERLIN) == at(2026, 1, 1, 23)


def test_month_ends() -> None:
    on_31st = Schedule.parse("0 0 31 * *")
    ticks = on_31st.ticks_between(at(2026, 1, 1), at(2026, 9, 1), UTC_ZONE)
    assert [t.month for t in ticks] == [1, 3, 5, 7, 8]
    last_day = Schedule.parse("0 12 L * *")
    ticks = last_day.ticks_between(at(2028, 1, 15), at(2028, 4, 15), UTC_ZONE)
    assert [(t.month, t.day) for t in ticks] == [(1, 31), (2, 29), (3, 31)]
    monthly = Schedule.parse("@monthly")
    assert monthly.next_after(at(2026, 1, 31, 22, 30), BERLIN) == at(2026, 1, 31, 23)
    assert monthly.next_after(at(2026, 1, 31, 23, 0), BERLIN) == at(2026, 2, 28, 23)


def test_latest_tick_at_or_before() -> None:
    hourly = Schedule.parse("@hourly")
    assert hourly.latest_at_or_before(at(2026, 5, 5, 10, 0), UTC_ZONE) == at(2026, 5, 5, 10)
    assert hourly.latest_at_or_before(at(2026, 5, 5, 10, 59, 59), UTC_ZONE) == at(2026, 5, 5, 10)
    every = Schedule.parse("@every 90s")
    assert every.latest_at_or_before(at(2026, 5, 5, 10, 0, 45), UTC_ZONE) == at(2026, 5, 5, 10, 0, 0)
    assert every.next_after(at(2026, 5, 5, 10, 0, 0), UTC_ZONE) == at(2026, 5, 5, 10, 1, 30)


@given(st.integers(min_value=60, max_value=86_400), st.integers(min_value=0, max_value=10**9))
def test_every_ticks_are_epoch_anchored_and_evenly_spaced(seconds: int, offset: int) -> None:
    every = Schedule.parse(f"@every {seconds}s")
    start = at(2000, 1, 1) + timedelta(seconds=offset)
    ticks = every.ticks_between(start, start + timedelta(seconds=seconds * 3), UTC_ZONE)
    assert len(ticks) == 3
    assert all(t > start for t in ticks)
    assert all(int(t.timestamp()) % seconds == 0 for t in ticks)
    latest = every.latest_at_or_before(start, UTC_ZONE)
    assert latest is not None
    assert latest <= start < latest + timedelta(seconds=seconds) == ticks[0]


# --- deadlines -------------------------------------------------------------------------------


def test_judge_waits_runs_and_skips() -> None:
    due = at(2026, 1, 1, 12)
    deadline = timedelta(minutes=5)
    assert judge(due, due - timedelta(seconds=1), deadline).action == WAIT
    assert judge(due, due, deadline).action == RUN
    assert judge(due, due + deadline, deadline).action == RUN
    late = judge(due, due + deadline + timedelta(seconds=1), deadline)
    assert late.action == SKIP
    assert "starting deadline of 5m" in late.reason
    assert judge(due, due + timedelta(days=30), None).action == RUN
    # A reconcile running anyway takes targets due within ``ahead`` of it, and no sooner.
    ahead = timedelta(seconds=1)
    assert judge(due, due - timedelta(milliseconds=999), deadline, ahead=ahead).action == RUN
    assert judge(due, due - timedelta(milliseconds=1001), deadline, ahead=ahead).action == WAIT


# --- jitter ----------------------------------------------------------------------------------


def test_jitter_is_stable_and_within_the_window() -> None:
    window = timedelta(minutes=5)
    offsets = [jitter("uid-1", f"claim-{i}", window) for i in range(1000)]
    assert offsets == [jitter("uid-1", f"claim-{i}", window) for i in range(1000)]
    assert all(timedelta() <= o < window for o in offsets)
    # A thousand claims spread over the window: no second holds more than a handful.
    per_second: dict[int, int] = {}
    for o in offsets:
        per_second[int(o.total_seconds())] = per_second.get(int(o.total_seconds()), 0) + 1
    assert len(per_second) > 250
    assert max(per_second.values()) <= 12
    assert jitter("uid-2", "claim-0", window) != jitter("uid-1", "claim-0", window)


def test_jitter_window_defaults_and_caps() -> None:
    assert jitter_window(timedelta(hours=1)) == timedelta(minutes=5)
    assert jitter_window(timedelta(minutes=10)) == timedelta(minutes=1)
    assert jitter_window(timedelta(minutes=10), timedelta(seconds=5)) == timedelta(seconds=5)
    # Never half the interval or more, whatever is asked.
    assert jitter_window(timedelta(minutes=1), timedelta(hours=1)) < timedelta(seconds=30)
    assert jitter_window(timedelta(hours=1), timedelta()) == timedelta()
    assert jitter("uid", "claim", timedelta()) == timedelta()


# --- names -----------------------------------------------------------------------------------

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?", fullmatch=True),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_run_names_are_deterministic_dns_labels(schedule: str, claim: str, tick: datetime) -> None:
    tick = tick.replace(microsecond=0)
    name = run_name(schedule, claim, tick, "uid-1")
    assert name == run_name(schedule, claim, tick, "uid-1")
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name != run_name(schedule, claim, tick + timedelta(seconds=1), "uid-1")
    assert name != run_name(schedule, claim, tick, "uid-2")


def test_run_names_of_long_targets_stay_apart() -> None:
    tick = at(2026, 1, 1)
    a = run_name("nightly", "x" * 40 + "-a", tick, "uid")
    b = run_name("nightly", "x" * 40 + "-b", tick, "uid")
    assert a != b
    assert a.startswith("nightly-xxxxxxxxxxxxxxxxxx-20260101-000000-")
