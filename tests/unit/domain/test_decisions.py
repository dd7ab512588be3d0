"""Readiness, restore, export and delete decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain import decisions as d
from elasticsan_snapshotter.domain.errors import InvalidRequest, LimitReached, Transient
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.ports import DiskSnapshotInfo, SnapshotInfo

pytestmark = pytest.mark.unit

GROUP = ElasticSanId("sub", "rg", "san").volume_group("vg")
VOLUME = GROUP.volume("vol")
OTHER = GROUP.volume("other")
DISK = DiskSnapshotId("sub", "rg", "export1")


def snap(name: str, source: VolumeId = VOLUME, state: str = "Succeeded", size: int = 10) -> SnapshotInfo:
    return SnapshotInfo(GROUP.snapshot(name), source, size, state)


def disk(
    percent: float = 100.0, state: str = "Succeeded", error: str | None = None, size: int | None = 10
) -> DiskSnapshotInfo:
    return DiskSnapshotInfo(DISK, "westeurope", state, percent, size_gib=size, copy_error=error)


# --- readiness ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["Succeeded", "succeeded"])
def test_succeeded_snapshot_is_ready(state: str) -> None:
    assert d.snapshot_ready(snap("s", state=state)) is True


@pytest.mark.parametrize("state", ["Creating", "Pending", "Updating", ""])
def test_snapshot_in_progress_is_not_ready(state: str) -> None:
    assert d.snapshot_ready(snap("s", state=state)) is False


@pytest.mark.parametrize("state", ["Failed", "Canceled"])
def test_failed_snapshot_is_a_final_error(state: str) -> None:
    with pytest.raises(d.SnapshotFailed, match=state) as caught:
        d.snapshot_ready(snap("s", state=state))
    assert caught.value.final


# --- sizes and times ------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=d.MAX_VOLUME_GIB))
def test_restore_size_is_the_source_volume_in_bytes(gib: int) -> None:
    assert d.restore_size_bytes(gib) == gib * 2**30


def test_restore_size_of_a_negative_volume_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        d.restore_size_bytes(-1)


@pytest.mark.parametrize("gib", [0, d.MAX_VOLUME_GIB + 1])
def test_volume_sizes_outside_the_service_range_are_refused(gib: int) -> None:
    with pytest.raises(InvalidRequest, match="64 TiB"):
        d.check_volume_size(gib)


def test_creation_time_is_unix_nanoseconds() -> None:
    moment = datetime(2026, 1, 1, 0, 0, 1, 5, tzinfo=UTC)
    assert d.creation_time_ns(moment) == 1_767_225_601_000_005_000
    assert d.creation_time_ns(moment.replace(tzinfo=None)) == 1_767_225_601_000_005_000
    shifted = moment.astimezone(timezone(timedelta(hours=2)))
    assert d.creation_time_ns(shifted) == 1_767_225_601_000_005_000


@pytest.mark.parametrize(
    ("a", "b", "same"), [("westeurope", "West Europe", True), ("westeurope", "northeurope", False)]
)
def test_regions_compare_like_azure_spells_them(a: str, b: str, same: bool) -> None:
    assert d.same_region(a, b) is same


# --- restore: volume modes (sizes, regions and sources: test_provisioning_rules.py) ----------------


def test_the_same_volume_mode_is_accepted() -> None:
    d.check_volume_mode("Block", "Block")
    d.check_volume_mode("Filesystem", "Filesystem")


def test_volume_mode_change_is_refused_without_the_annotation() -> None:
    with pytest.raises(InvalidRequest, match=d.ALLOW_VOLUME_MODE_CHANGE_ANNOTATION):
        d.check_volume_mode("Filesystem", "Block")


def test_volume_mode_change_is_accepted_with_the_annotation() -> None:
    d.check_volume_mode("Filesystem", "Block", {d.ALLOW_VOLUME_MODE_CHANGE_ANNOTATION: "true"})


def test_volume_mode_annotation_must_say_true() -> None:
    with pytest.raises(InvalidRequest):
        d.check_volume_mode("Filesystem", "Block", {d.ALLOW_VOLUME_MODE_CHANGE_ANNOTATION: "yes"})


def test_missing_claim_mode_means_filesystem() -> None:
    d.check_volume_mode("Filesystem", None)
    with pytest.raises(InvalidRequest, match="Block volume"):
        d.check_volume_mode("Block", None)


def test_unknown_source_mode_is_not_checked() -> None:
    d.check_volume_mode(None, "Block")


def test_unknown_mode_names_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="unknown volume mode"):
        d.check_volume_mode("Filesystem", "block")


# --- volumes from managed-disk snapshots ---------------------------------------------------


def test_volume_from_a_finished_disk_snapshot_is_accepted() -> None:
    d.check_volume_from_disk_snapshot(requested_gib=10, disk_snapshot=disk(), target_region="West Europe")


def test_volume_from_a_disk_snapshot_in_another_region_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="same region"):
        d.check_volume_from_disk_snapshot(requested_gib=10, disk_snapshot=disk(), target_region="eastus")


def test_volume_smaller_than_the_disk_snapshot_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="smaller"):
        d.check_volume_from_disk_snapshot(requested_gib=9, disk_snapshot=disk(), target_region="westeurope")


def test_volume_from_a_disk_snapshot_still_copying_waits() -> None:
    with pytest.raises(Transient, match="42%"):
        d.check_volume_from_disk_snapshot(
            requested_gib=10, disk_snapshot=disk(42.0), target_region="westeurope"
        )


# --- export ---------------------------------------------------------------------------------


def test_export_up_to_four_tib_in_the_same_region_is_allowed() -> None:
    d.check_export(source_volume_size_gib=4096, san_region="westeurope", target_region="West Europe")


def test_export_of_a_volume_above_four_tib_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="4 TiB") as caught:
        d.check_export(source_volume_size_gib=4097, san_region="westeurope", target_region="westeurope")
    assert caught.value.final


def test_export_to_another_region_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="same region"):
        d.check_export(source_volume_size_gib=1, san_region="westeurope", target_region="eastus")


@pytest.mark.parametrize(
    ("info", "done", "percent"),
    [
        (disk(0.0), False, 0.0),
        (disk(55.5), False, 55.5),
        (disk(100.0), True, 100.0),
        (disk(100.0, state="Updating"), False, 100.0),
        (disk(120.0), True, 100.0),
    ],
)
def test_export_progress(info: DiskSnapshotInfo, done: bool, percent: float) -> None:
    assert d.export_progress(info) == d.ExportProgress(done=done, percent=percent)


def test_export_copy_error_is_final() -> None:
    with pytest.raises(d.SnapshotFailed, match="disk full"):
        d.export_progress(disk(30.0, error="disk full"))


def test_failed_export_snapshot_is_final() -> None:
    with pytest.raises(d.SnapshotFailed, match="Failed"):
        d.export_progress(disk(30.0, state="Failed"))


# --- volume deletion and snapshot limits ---------------------------------------------------


def test_snapshots_of_picks_only_that_volumes_snapshots() -> None:
    all_snapshots = [snap("a"), snap("b", source=OTHER), snap("c")]
    assert [s.id.name for s in d.snapshots_of(VOLUME, all_snapshots)] == ["a", "c"]


def test_delete_of_a_volume_without_snapshots_destroys_nothing() -> None:
    assert d.check_volume_delete(VOLUME, [snap("b", source=OTHER)], delete_snapshots=False) == []


def test_delete_of_a_volume_with_snapshots_is_refused_and_names_them() -> None:
    with pytest.raises(d.VolumeHasSnapshots, match=r"2 snapshot\(s\) \(a, c\)") as caught:
        d.check_volume_delete(VOLUME, [snap("c"), snap("a"), snap("b", source=OTHER)], delete_snapshots=False)
    assert isinstance(caught.value, InvalidRequest)


def test_explicit_delete_lists_the_snapshots_it_destroys() -> None:
    doomed = d.check_volume_delete(VOLUME, [snap("a"), snap("b", source=OTHER)], delete_snapshots=True)
    assert doomed == [GROUP.snapshot("a")]


def test_snapshot_count_limit() -> None:
    d.check_snapshot_count(VOLUME, 199)
    with pytest.raises(LimitReached, match="200"):
        d.check_snapshot_count(VOLUME, 200)


def test_rate_delay_is_zero_below_seven_in_five_minutes() -> None:
    assert d.snapshot_rate_delay([0.0] * 6, now=10.0) == 0.0
    assert d.snapshot_rate_delay([0.0] * 7, now=300.0) == 0.0  # all seven have left the window


def test_rate_delay_waits_for_the_oldest_in_the_window_to_leave() -> None:
    times = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert d.snapshot_rate_delay(times, now=100.0) == pytest.approx(200.0, abs=0.002)
    # With more than seven recorded, the delay is until only six remain in the window.
    assert d.snapshot_rate_delay([*times, 70.0], now=100.0) == pytest.approx(210.0, abs=0.002)


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=20), st.floats(min_value=0, max_value=1000))
def test_after_the_delay_a_snapshot_fits(times: list[float], offset: float) -> None:
    now = max(times, default=0.0) + offset
    delay = d.snapshot_rate_delay(times, now)
    later = now + delay
    assert sum(1 for t in times if later - t < d.SNAPSHOT_RATE_WINDOW) < d.SNAPSHOT_RATE_LIMIT
