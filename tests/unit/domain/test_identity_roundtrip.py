"""ARM IDs and compact handles: round-trips, case-insensitivity and rejection of malformed input."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.identity import (
    CSI_MAX_BYTES,
    DiskSnapshotId,
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
    parse_snapshot_handle,
)

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"

subscriptions = st.uuids().map(str)
resource_groups = st.from_regex(r"[A-Za-z0-9_()-][A-Za-z0-9_.()-]{0,20}[A-Za-z0-9_()-]", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{1,22}", fullmatch=True)


@st.composite
def volume_ids(draw: st.DrawFn) -> VolumeId:
    san = ElasticSanId(draw(subscriptions), draw(resource_groups), draw(names))
    return san.volume_group(draw(names)).volume(draw(names))


@st.composite
def snapshot_ids(draw: st.DrawFn) -> SnapshotId:
    san = ElasticSanId(draw(subscriptions), draw(resource_groups), draw(names))
    return san.volume_group(draw(names)).snapshot(draw(names))


@st.composite
def disk_snapshot_ids(draw: st.DrawFn) -> DiskSnapshotId:
    return DiskSnapshotId(draw(subscriptions), draw(resource_groups), draw(names))


def _flip_case(text: str) -> str:
    return text.swapcase()


@given(volume_ids())
def test_volume_arm_id_round_trips(volume: VolumeId) -> None:
    parsed = VolumeId.parse(volume.arm_id, SUB)
    assert parsed == volume
    assert parsed.arm_id == volume.arm_id


def _portable_fits(child: VolumeId | SnapshotId) -> bool:
    group = child.volume_group
    parts = (child.subscription, group.san.resource_group, group.san.name, group.name, child.name)
    return len("#".join(parts).encode()) <= CSI_MAX_BYTES


@given(volume_ids(), subscriptions)
def test_volume_handles_carry_their_subscription(volume: VolumeId, other: str) -> None:
    assume(_portable_fits(volume))  # the fallback has its own test below
    handle = volume.handle(volume.subscription)
    assert not handle.startswith("/")
    assert len(handle.encode()) <= CSI_MAX_BYTES
    assert handle.split("#")[0] == volume.subscription
    # An operator configured for any other default subscription reads the same volume.
    assert VolumeId.parse(handle, other) == volume
    assert volume.handle(other) == handle


@given(snapshot_ids(), subscriptions)
def test_snapshot_handles_resolve_under_any_default_subscription(snapshot: SnapshotId, other: str) -> None:
    assume(_portable_fits(snapshot))
    handle = snapshot.handle(snapshot.subscription)
    assert handle == f"{snapshot.subscription}#{snapshot.volume_group.san.resource_group}#" + (
        f"{snapshot.volume_group.san.name}#{snapshot.volume_group.name}#{snapshot.name}"
    )
    assert parse_snapshot_handle(handle, other) == snapshot
    assert SnapshotId.parse(snapshot.arm_id, other) == snapshot
    assert parse_snapshot_handle(snapshot.arm_id, other) == snapshot


@given(disk_snapshot_ids(), subscriptions)
def test_disk_snapshot_handles_resolve_under_any_default_subscription(
    disk: DiskSnapshotId, other: str
) -> None:
    handle = disk.handle(other)
    assert handle == f"{disk.subscription}#{disk.resource_group}#{disk.name}"
    assert parse_snapshot_handle(handle, other) == disk
    assert DiskSnapshotId.parse(disk.arm_id, other) == disk
    assert parse_snapshot_handle(disk.arm_id, other) == disk


@given(snapshot_ids(), disk_snapshot_ids())
def test_handles_without_a_subscription_mean_the_configured_one(
    snapshot: SnapshotId, disk: DiskSnapshotId
) -> None:
    # The form written before handles carried the subscription is still read.
    group = snapshot.volume_group
    old = f"{group.san.resource_group}#{group.san.name}#{group.name}#{snapshot.name}"
    assert parse_snapshot_handle(old, snapshot.subscription) == snapshot
    assert parse_snapshot_handle(f"{disk.resource_group}#{disk.name}", disk.subscription) == disk
    volume = group.volume(snapshot.name)
    assert VolumeId.parse(old, volume.subscription) == volume


def test_long_names_fall_back_to_the_form_without_the_subscription() -> None:
    san = ElasticSanId(SUB, "r" * 30, "s" * 24)
    snapshot = san.volume_group("g" * 24).snapshot("snapshot-" + "0" * 36)
    handle = snapshot.handle(SUB)
    assert handle == "#".join(("r" * 30, "s" * 24, "g" * 24, "snapshot-" + "0" * 36))
    assert parse_snapshot_handle(handle, SUB) == snapshot
    # Outside the configured subscription nothing shorter than the ARM ID names it: refused.
    with pytest.raises(InvalidRequest, match="outside the configured subscription"):
        snapshot.handle("00000000-0000-0000-0000-000000000002")


def test_a_subscription_that_is_no_guid_is_left_out() -> None:
    volume = ElasticSanId("sub-1", "rg", "san").volume_group("vg").volume("vol")
    assert volume.handle("sub-1") == "rg#san#vg#vol"


@given(volume_ids())
def test_ids_compare_and_hash_without_case(volume: VolumeId) -> None:
    flipped = VolumeId.parse(_flip_case(volume.arm_id), SUB)
    assert flipped == volume
    assert hash(flipped) == hash(volume)
    assert len({flipped, volume}) == 1


def test_volume_and_snapshot_with_the_same_parts_differ() -> None:
    group = ElasticSanId(SUB, "rg", "san").volume_group("vg")
    assert group.volume("x") != group.snapshot("x")


def test_arm_ids_use_the_service_spelling() -> None:
    volume = ElasticSanId(SUB, "rg", "san").volume_group("vg").volume("vol")
    assert volume.arm_id == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san"
        "/volumegroups/vg/volumes/vol"
    )
    assert VolumeGroupId.parse(volume.volume_group.arm_id) == volume.volume_group
    assert ElasticSanId.parse(volume.volume_group.san.arm_id + "/") == volume.volume_group.san


@given(st.text(max_size=200))
def test_arbitrary_text_is_either_a_volume_or_invalid_request(text: str) -> None:
    try:
        volume = VolumeId.parse(text, SUB)
    except InvalidRequest:
        return
    # Whatever parses must round-trip through its own ARM ID.
    assert VolumeId.parse(volume.arm_id, SUB) == volume


@pytest.mark.parametrize(
    "value",
    [
        "",
        "rg#san#vg",
        "rg#san#vg#vol#extra",
        f"{SUB}#rg#san#vg#vol#extra",
        f"{SUB}##san#vg#vol",
        "rg##vg#vol",
        "rg#san#vg#",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg/snapshots/x",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/x",
        "/subscriptions//resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg/volumes/v",
        "rg.#san#vg#vol",
        " rg#san#vg#vol",
    ],
)
def test_malformed_volume_handles_are_rejected(value: str) -> None:
    with pytest.raises(InvalidRequest):
        VolumeId.parse(value, SUB)


@given(volume_ids(), st.sampled_from(["/", "#"]))
def test_a_separator_inside_a_name_is_rejected(volume: VolumeId, separator: str) -> None:
    with pytest.raises(InvalidRequest):
        volume.volume_group.volume(volume.name + separator + "x")


def test_handle_longer_than_csi_allows_is_refused() -> None:
    san = ElasticSanId(SUB, "r" * 90, "s" * 24)
    volume = san.volume_group("g" * 63).volume("v" * 63)
    with pytest.raises(InvalidRequest, match="128 bytes"):
        volume.handle(SUB)


@given(st.lists(names, min_size=0, max_size=7).filter(lambda parts: len(parts) != 4))
def test_compact_volume_handles_need_four_parts_after_the_subscription(parts: list[str]) -> None:
    with pytest.raises(InvalidRequest, match="4 non-empty parts"):
        VolumeId.parse("#".join(parts), SUB)


@given(st.lists(names, min_size=3, max_size=7).filter(lambda parts: len(parts) != 2))
def test_compact_disk_snapshot_handles_need_two_parts_after_the_subscription(parts: list[str]) -> None:
    with pytest.raises(InvalidRequest, match="2 non-empty parts"):
        DiskSnapshotId.parse("#".join(parts), SUB)


@given(volume_ids(), st.sampled_from(["volumes", "snapshots"]))
def test_arm_ids_of_the_wrong_kind_are_rejected(volume: VolumeId, segment: str) -> None:
    arm_id = volume.arm_id if segment == "snapshots" else volume.volume_group.snapshot(volume.name).arm_id
    parser = SnapshotId.parse if segment == "snapshots" else VolumeId.parse
    with pytest.raises(InvalidRequest, match="is not the ARM ID"):
        parser(arm_id, SUB)
