"""Retention: count rules, tiers in a time zone, maxAge, the ready floor, failed copies and in-use ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.retention import (
    FAILED,
    IN_PROGRESS,
    READY,
    Copy,
    Holders,
    Policy,
    group_in_use_reason,
    in_use_reason,
    plan,
    policy_from_spec,
)
from elasticsan_snapshotter.domain.schedule import parse_duration, time_zone

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
UTC_ZONE = time_zone("UTC")
BERLIN = time_zone("Europe/Berlin")


def hourly_copies(count: int, state: str = READY, start: datetime = NOW) -> list[Copy]:
    """``count`` copies one hour apart, the newest at ``start``; named h0 (newest), h1, ..."""
    return [Copy(f"h{i}", start - timedelta(hours=i), state) for i in range(count)]


def test_keep_last_deletes_the_oldest() -> None:
    result = plan(hourly_copies(5), Policy(keep_last=3), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {"h3", "h4"}
    assert result.kept_ready == ("h0", "h1", "h2")


def test_no_rule_keeps_everything() -> None:
    assert plan(hourly_copies(5), Policy(), now=NOW, zone=UTC_ZONE).delete == ()


def test_max_age_caps_the_count_rules() -> None:
    result = plan(hourly_copies(10), Policy(keep_last=8, max_age=timedelta(hours=4)), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {"h5", "h6", "h7", "h8", "h9"}


def test_min_keep_ready_survives_max_age() -> None:
    # Every copy is a week old (the schedule stopped): the newest stays anyway.
    old = hourly_copies(3, start=NOW - timedelta(days=7))
    result = plan(old, Policy(max_age=timedelta(days=1)), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {"h1", "h2"}
    result = plan(old, Policy(max_age=timedelta(days=1), min_keep_ready=2), now=NOW, zone=UTC_ZONE)
    assert result.delete == ("h2",)


def test_min_keep_ready_zero_allows_deleting_all_expired() -> None:
    old = hourly_copies(2, start=NOW - timedelta(days=7))
    result = plan(old, Policy(max_age=timedelta(days=1), min_keep_ready=0), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {"h0", "h1"}


def test_failed_runs_never_evict_good_ones() -> None:
    good = hourly_copies(2, start=NOW - timedelta(hours=10))
    failed = [Copy(f"f{i}", NOW - timedelta(hours=i), FAILED) for i in range(5)]
    result = plan(good + failed, Policy(keep_last=2), now=NOW, zone=UTC_ZONE)
    assert "h0" not in result.delete
    assert "h1" not in result.delete
    assert set(result.delete) == {"f1", "f2", "f3", "f4"}  # only the newest failed one stays
    result = plan(good + failed, Policy(keep_last=2, keep_failed=0), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {f"f{i}" for i in range(5)}


def test_copies_in_progress_are_never_touched() -> None:
    copies = [*hourly_copies(3), Copy("new", NOW + timedelta(hours=1), IN_PROGRESS)]
    result = plan(copies, Policy(keep_last=1), now=NOW, zone=UTC_ZONE)
    assert "new" not in result.delete
    assert set(result.delete) == {"h1", "h2"}


def test_in_use_copies_are_blocked_not_deleted() -> None:
    copies = hourly_copies(4)
    copies[3] = Copy("h3", copies[3].time, READY, in_use="the dataSource of a claim that is not Bound yet")
    result = plan(copies, Policy(keep_last=1), now=NOW, zone=UTC_ZONE)
    assert set(result.delete) == {"h1", "h2"}
    assert result.blocked == (("h3", "the dataSource of a claim that is not Bound yet"),)
    assert "h3" in result.kept_ready


def test_daily_tier_takes_the_newest_of_each_day() -> None:
    copies = hourly_copies(24 * 4)  # four days of hourlies, newest at 12:00 UTC
    result = plan(copies, Policy(daily=3), now=NOW, zone=UTC_ZONE)
    # Newest of 15 June (12:00), of 14 June (23:00), of 13 June (23:00).
    assert set(result.kept_ready) == {"h0", "h13", "h37"}


def test_tiers_use_the_time_zone() -> None:
    # 22:30 UTC on 14 June is already 15 June in Berlin (CEST, UTC+2).
    copies = [
        Copy("a", datetime(2026, 6, 14, 21, 30, tzinfo=UTC), READY),
        Copy("b", datetime(2026, 6, 14, 22, 30, tzinfo=UTC), READY),
        Copy("c", datetime(2026, 6, 15, 11, 0, tzinfo=UTC), READY),
    ]
    in_utc = plan(copies, Policy(daily=2, min_keep_ready=0), now=NOW, zone=UTC_ZONE)
    in_berlin = plan(copies, Policy(daily=2, min_keep_ready=0), now=NOW, zone=BERLIN)
    assert set(in_utc.kept_ready) == {"c", "b"}
    assert set(in_berlin.kept_ready) == {"c", "a"}


def test_weekly_and_monthly_tiers() -> None:
    daily = [Copy(f"d{i}", NOW - timedelta(days=i), READY) for i in range(70)]
    weekly = plan(daily, Policy(weekly=3, min_keep_ready=0), now=NOW, zone=UTC_ZONE)
    # 15 June 2026 is a Monday: the newest of this ISO week, of the week before (Sunday 14th) and of 7th.
    assert set(weekly.kept_ready) == {"d0", "d1", "d8"}
    monthly = plan(daily, Policy(monthly=3, min_keep_ready=0), now=NOW, zone=UTC_ZONE)
    assert set(monthly.kept_ready) == {"d0", "d15", "d46"}  # 15 June, 31 May, 30 April


def test_tiers_and_keep_last_combine() -> None:
    copies = hourly_copies(24 * 3)
    result = plan(copies, Policy(keep_last=2, daily=3), now=NOW, zone=UTC_ZONE)
    assert set(result.kept_ready) == {"h0", "h1", "h13", "h37"}


def test_in_use_reasons() -> None:
    holders = Holders(pending_restores=frozenset({"restoring"}), running_exports=frozenset({"exporting"}))
    assert in_use_reason("x", keep_label="true", group=None, holders=holders) == "labelled keep"
    assert "not Bound" in in_use_reason("restoring", keep_label=None, group=None, holders=holders)
    assert "export" in in_use_reason("exporting", keep_label=None, group=None, holders=holders)
    assert "delete the group" in in_use_reason("m", keep_label=None, group="g1", holders=holders)
    assert in_use_reason("free", keep_label="false", group=None, holders=holders) == ""


def test_a_group_is_held_by_any_member_in_use() -> None:
    holders = Holders(pending_restores=frozenset({"m-restoring"}), running_exports=frozenset({"m-exporting"}))
    free = [("m-free", None)]
    assert group_in_use_reason(keep_label=None, members=free, holders=holders) == ""
    assert group_in_use_reason(keep_label="true", members=free, holders=holders) == "labelled keep"
    assert group_in_use_reason(keep_label=None, members=[*free, ("m-restoring", None)], holders=holders) == (
        "member m-restoring is the dataSource of a claim that is not Bound yet"
    )
    assert group_in_use_reason(keep_label=None, members=[*free, ("m-exporting", None)], holders=holders) == (
        "member m-exporting is the source of an export that has not finished"
    )
    assert group_in_use_reason(keep_label=None, members=[("m-kept", "true")], holders=holders) == (
        "member m-kept is labelled keep"
    )
    # A group with no members known yet (still being made) holds nothing by itself.
    assert group_in_use_reason(keep_label=None, members=[], holders=holders) == ""


def test_policy_from_spec_defaults_and_errors() -> None:
    policy = policy_from_spec({"keepLast": 3, "maxAge": "2d", "daily": 7}, parse_duration)
    assert policy == Policy(keep_last=3, max_age=timedelta(days=2), daily=7)
    assert policy.min_keep_ready == 1
    assert policy.keep_failed == 1
    for bad in ({"keepLast": -1}, {"weekly": -2}, {"maxAge": "soon"}, {"keepFailed": "1"}):
        with pytest.raises(InvalidRequest):
            policy_from_spec(bad, parse_duration)


states = st.sampled_from([READY, READY, READY, FAILED, IN_PROGRESS])


@given(
    st.lists(st.tuples(st.integers(0, 24 * 60), states, st.booleans()), max_size=40),
    st.integers(0, 5),
    st.one_of(st.none(), st.integers(1, 200)),
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(0, 4),
)
def test_retention_never_loses_what_it_must_keep(
    items: list[tuple[int, str, bool]],
    keep_last: int,
    max_age_hours: int | None,
    min_keep_ready: int,
    keep_failed: int,
    daily: int,
) -> None:
    copies = [
        Copy(f"c{i}", NOW - timedelta(hours=hours), state, in_use="held" if held else "")
        for i, (hours, state, held) in enumerate(items)
    ]
    policy = Policy(
        keep_last=keep_last,
        max_age=timedelta(hours=max_age_hours) if max_age_hours else None,
        min_keep_ready=min_keep_ready,
        keep_failed=keep_failed,
        daily=daily,
    )
    result = plan(copies, policy, now=NOW, zone=BERLIN)
    deleted = set(result.delete)
    by_name = {c.name: c for c in copies}
    ready = sorted((c for c in copies if c.state == READY), key=lambda c: (c.time, c.name), reverse=True)
    assert not deleted & {c.name for c in ready[:min_keep_ready]}
    assert all(by_name[n].state != IN_PROGRESS for n in deleted)
    assert all(not by_name[n].in_use for n in deleted)
    failed_kept = [c for c in copies if c.state == FAILED and c.name not in deleted]
    assert len(failed_kept) >= min(keep_failed, sum(1 for c in copies if c.state == FAILED))
    # Deleting is idempotent: what stays is stable under a second pass.
    rest = [c for c in copies if c.name not in deleted]
    assert plan(rest, policy, now=NOW, zone=BERLIN).delete == ()
