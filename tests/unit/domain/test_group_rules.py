"""Group rules: member names and handles, the all-or-nothing budget, class parameters, the cut window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain import groups as g
from elasticsan_snapshotter.domain.errors import InvalidRequest, Throttled
from elasticsan_snapshotter.domain.identity import CSI_MAX_BYTES, ElasticSanId
from elasticsan_snapshotter.domain.names import SNAPSHOT_NAME
from elasticsan_snapshotter.domain.parameters import InvalidParameter

pytestmark = pytest.mark.unit

VG = ElasticSanId("sub", "rg", "san").volume_group("vg")
DATA, LOGS = VG.volume("data"), VG.volume("logs")
OTHER_VG = ElasticSanId("sub", "rg", "san2").volume_group("vg9")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_handle_is_deterministic_per_content_and_differs_between_contents() -> None:
    uid = str(uuid.uuid4())
    assert g.group_handle(uid) == g.group_handle(uid.upper())
    assert g.group_handle(uid) != g.group_handle(str(uuid.uuid4()))
    assert g.is_group_handle(g.group_handle(uid))
    assert len(g.group_handle(uid).encode()) <= CSI_MAX_BYTES


def test_handle_needs_a_uid() -> None:
    with pytest.raises(InvalidRequest):
        g.group_handle("  ")


@given(st.uuids(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=63))
def test_member_names_are_valid_snapshot_names_that_carry_the_handle(
    uid: uuid.UUID, volume_name: str
) -> None:
    handle = g.group_handle(str(uid))
    volume = VG.volume(volume_name)
    name = g.member_snapshot_name(handle, volume)
    assert SNAPSHOT_NAME.is_valid(name)
    assert name.startswith(f"{handle}-")
    assert g.is_member(handle, g.member_snapshot(handle, volume))


def test_members_of_one_group_differ_per_volume_and_live_beside_their_volume() -> None:
    handle = g.group_handle("c0ffee00-0000-0000-0000-000000000001")
    data, logs = g.member_snapshot(handle, DATA), g.member_snapshot(handle, LOGS)
    far = g.member_snapshot(handle, OTHER_VG.volume("data"))
    assert len({data.name, logs.name, far.name}) == 3
    assert data.volume_group == VG
    assert far.volume_group == OTHER_VG
    # The same volume spelled in another case is the same member (ARM IDs ignore case).
    assert g.member_snapshot_name(handle, VG.volume("data")) == g.member_snapshot_name(
        handle, ElasticSanId("SUB", "RG", "SAN").volume_group("VG").volume("DATA")
    )


def test_membership_is_read_from_the_name_alone() -> None:
    handle = g.group_handle("c0ffee00-0000-0000-0000-000000000001")
    other = g.group_handle("c0ffee00-0000-0000-0000-000000000002")
    assert not g.is_member(handle, g.member_snapshot(other, DATA))
    assert not g.is_member(handle, VG.snapshot(f"{handle}-x"))
    assert not g.is_member(handle, VG.snapshot("snapshot-1234"))


def test_member_names_need_a_handle_of_ours() -> None:
    with pytest.raises(InvalidRequest):
        g.member_snapshot_name("someone-elses-handle", DATA)


def test_imported_group_members_must_belong_to_an_operator_handle() -> None:
    handle = g.group_handle("c0ffee00-0000-0000-0000-000000000001")
    g.check_imported_group(handle, [g.member_snapshot(handle, DATA), g.member_snapshot(handle, LOGS)])
    with pytest.raises(InvalidRequest, match="snapshot-1"):
        g.check_imported_group(handle, [g.member_snapshot(handle, DATA), VG.snapshot("snapshot-1")])
    with pytest.raises(InvalidRequest, match="lists no snapshot"):
        g.check_imported_group(handle, [])
    with pytest.raises(InvalidRequest, match="128"):
        g.check_imported_group("x" * 129, [VG.snapshot("snapshot-1")])
    # A foreign handle may group any snapshots.
    g.check_imported_group("imported-set", [VG.snapshot("snapshot-1")])


# --- budget ------------------------------------------------------------------------------------


def budget(
    volume_count: int = 0, recent: int = 0, *, cut: bool = False, volume: object = DATA
) -> g.MemberBudget:
    times = tuple((NOW - timedelta(seconds=10 * (i + 1))).timestamp() for i in range(recent))
    assert volume in (DATA, LOGS)
    return g.MemberBudget(volume=volume, snapshot_count=volume_count, recent_creations=times, cut=cut)  # type: ignore[arg-type]


def test_budget_with_room_everywhere_passes() -> None:
    g.check_group_budget([budget(199, 6), budget(0, 0, volume=LOGS)], NOW.timestamp())


def test_a_member_at_the_cap_refuses_the_whole_group_naming_it() -> None:
    with pytest.raises(g.GroupBudgetExceeded, match="logs") as refused:
        g.check_group_budget([budget(3), budget(200, volume=LOGS)], NOW.timestamp())
    assert refused.value.final
    assert "/volumes/data" not in str(refused.value)
    assert "nothing was cut" in str(refused.value)


def test_a_full_pace_makes_the_whole_group_wait_for_the_slowest_member() -> None:
    with pytest.raises(g.GroupPaced) as paced:
        g.check_group_budget([budget(10, 7), budget(0, 0, volume=LOGS)], NOW.timestamp())
    assert isinstance(paced.value, Throttled)
    assert paced.value.retryable
    # The oldest of the seven was 70 s ago: its slot frees 230 s from now.
    assert paced.value.retry_after == pytest.approx(230.0, abs=0.01)
    assert "data" in str(paced.value)
    assert "logs" not in str(paced.value)


def test_the_cap_is_reported_before_the_pace() -> None:
    with pytest.raises(g.GroupBudgetExceeded):
        g.check_group_budget([budget(10, 7), budget(200, volume=LOGS)], NOW.timestamp())


def test_members_cut_already_need_no_budget() -> None:
    g.check_group_budget([budget(200, 7, cut=True), budget(0, volume=LOGS)], NOW.timestamp())


def test_member_budget_leaves_out_the_groups_own_member() -> None:
    handle = g.group_handle("c0ffee00-0000-0000-0000-000000000001")
    own = g.member_snapshot(handle, DATA)
    older = [(VG.snapshot(f"snapshot-{i}"), NOW - timedelta(minutes=i + 1)) for i in range(3)]
    fresh = g.member_budget(handle, DATA, older)
    assert (fresh.snapshot_count, fresh.cut, len(fresh.recent_creations)) == (3, False, 3)
    resumed = g.member_budget(handle, DATA, [*older, (own, NOW)])
    assert (resumed.snapshot_count, resumed.cut, len(resumed.recent_creations)) == (3, True, 3)
    assert NOW.timestamp() not in resumed.recent_creations


# --- class parameters --------------------------------------------------------------------------


def test_no_parameters_mean_crash_consistent_per_volume() -> None:
    assert g.parse_group_class_parameters({}).consistency == g.CRASH_CONSISTENT_PER_VOLUME
    assert (
        g.parse_group_class_parameters(
            {
                "consistency": "CrashConsistentPerVolume",
                "csi.storage.k8s.io/group-snapshotter-secret-name": "s",
            }
        ).consistency
        == g.CRASH_CONSISTENT_PER_VOLUME
    )


@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"speed": "fast"}, "unknown VolumeGroupSnapshotClass parameter(s) speed"),
        ({"csi.storage.k8s.io/whatever": "x"}, "csi.storage.k8s.io/whatever"),
        ({"consistency": "Perfect"}, "consistency 'Perfect' must be one of"),
        ({"consistency": "FilesystemConsistent", "freezeBudgetSeconds": "nan"}, "freezeBudgetSeconds 'nan'"),
        ({"onUnprovenFreeze": "Ignore"}, "onUnprovenFreeze 'Ignore' must be one of Retry"),
    ],
)
def test_class_parameters_this_operator_cannot_honour_are_refused(
    parameters: dict[str, str], said: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        g.parse_group_class_parameters(parameters)
    assert said in str(refused.value)


def test_a_filesystem_consistent_class_carries_its_freeze_policy() -> None:
    parsed = g.parse_group_class_parameters(
        {"consistency": "FilesystemConsistent", "freezeBudgetSeconds": "10", "onUnprovenFreeze": "Retry"}
    )
    assert parsed.consistency == g.FILESYSTEM_CONSISTENT
    assert parsed.freeze.freezes
    assert parsed.freeze.budget_seconds == 10.0
    assert g.parse_group_class_parameters({}).freeze.budget_seconds == 30.0


def test_bad_class_values_are_final_invalid_parameters() -> None:
    with pytest.raises(InvalidParameter) as refused:
        g.parse_group_class_parameters({"freezeBudgetSeconds": "-1"})
    assert not refused.value.retryable
    assert refused.value.reason == "InvalidParameter"


# --- cut window --------------------------------------------------------------------------------


def test_cut_window_is_first_to_last_accepted_put() -> None:
    assert g.cut_window_seconds([]) == 0.0
    assert g.cut_window_seconds([NOW]) == 0.0
    assert g.cut_window_seconds([NOW + timedelta(seconds=2.5), NOW, NOW + timedelta(seconds=1)]) == 2.5
