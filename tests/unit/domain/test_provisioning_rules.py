"""Placement, sizes and restore sources of new volumes: the rules both the operator and CSI plan by."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain import parameters as p
from elasticsan_snapshotter.domain import provisioning as pr
from elasticsan_snapshotter.domain.decisions import GIB, MAX_VOLUME_GIB, SnapshotFailed
from elasticsan_snapshotter.domain.errors import InvalidRequest, Transient
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
WEST = ElasticSanId(SUB, "rg", "west")
EAST = ElasticSanId(SUB, "rg", "east")
WEST_VG = WEST.volume_group("vg1")
EAST_VG = EAST.volume_group("vg1")
SOURCE = WEST_VG.volume("data")
SNAPSHOT = WEST_VG.snapshot("snap")
DISK = DiskSnapshotId(SUB, "rg-exports", "export1")


def size(required: int = 0, limit: int = 0) -> pr.SizeRequest:
    return pr.SizeRequest(required_bytes=required, limit_bytes=limit)


# --- sizes ------------------------------------------------------------------------------------


def test_a_size_is_rounded_up_to_whole_gib_and_is_at_least_one() -> None:
    assert pr.volume_size_gib(size(GIB + 1)) == 2
    assert pr.volume_size_gib(size(15 * 10**9)) == 14  # 15G = 13.97 GiB
    assert pr.volume_size_gib(size()) == 1


def test_without_a_request_the_source_decides_the_size() -> None:
    assert pr.volume_size_gib(size(), source_gib=10) == 10


def test_a_request_smaller_than_the_source_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="smaller than the source snapshot's 10Gi"):
        pr.volume_size_gib(size(10 * GIB - 1), source_gib=10)


def test_a_size_above_the_limit_or_64_tib_is_out_of_range() -> None:
    with pytest.raises(pr.CapacityOutOfRange, match="above the limit"):
        pr.volume_size_gib(size(GIB + 1, GIB + 2))
    with pytest.raises(pr.CapacityOutOfRange, match="64 TiB"):
        pr.volume_size_gib(size((MAX_VOLUME_GIB + 1) * GIB))
    with pytest.raises(pr.CapacityOutOfRange):
        pr.volume_size_gib(size(0, 5 * GIB), source_gib=10)


def test_a_negative_size_or_a_required_above_the_limit_is_invalid() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        pr.volume_size_gib(size(-1))
    with pytest.raises(InvalidRequest, match="larger than the limit"):
        pr.volume_size_gib(size(3 * GIB, 2 * GIB))


@given(st.integers(min_value=0, max_value=1024), st.integers(min_value=0, max_value=2**41))
def test_an_accepted_size_holds_the_request_and_the_source(source_gib: int, required: int) -> None:
    try:
        gib = pr.volume_size_gib(size(required), source_gib)
    except InvalidRequest:
        assert 0 < required < source_gib * GIB
        return
    assert gib * GIB >= required
    assert gib >= max(source_gib, 1)
    assert (gib - 1) * GIB < max(required, source_gib * GIB, 1)  # no more than one GiB of slack


# --- placement --------------------------------------------------------------------------------


def test_the_san_parameter_is_an_arm_id_or_a_managed_sans_name() -> None:
    assert pr.choose_san(EAST.arm_id, []) == EAST
    assert pr.choose_san("WEST", [EAST, WEST]) == WEST
    assert pr.choose_san(WEST.arm_id.upper(), [WEST]) == WEST
    with pytest.raises(p.InvalidParameter, match="managed: east"):
        pr.choose_san("west", [EAST])
    with pytest.raises(p.InvalidParameter, match=p.ELASTIC_SAN):
        pr.choose_san("/subscriptions/x/not-a-san", [])


def test_without_the_san_parameter_the_source_snapshot_then_the_first_managed_san_decides() -> None:
    assert pr.choose_san(None, [EAST], SNAPSHOT) == WEST
    assert pr.choose_san(None, [EAST, WEST], DISK) == EAST
    assert pr.choose_san(None, [EAST, WEST]) == EAST
    with pytest.raises(InvalidRequest, match=p.ELASTIC_SAN):
        pr.choose_san(None, [])


def test_without_the_group_parameter_only_a_single_group_is_chosen() -> None:
    assert pr.only_group(WEST, [WEST_VG]) == WEST_VG
    with pytest.raises(InvalidRequest, match=f"has 2 volume groups; set parameter {p.VOLUME_GROUP}"):
        pr.only_group(WEST, [WEST_VG, WEST.volume_group("vg2")])


def test_regions_must_match_however_azure_spells_them() -> None:
    pr.check_region("westeurope", "West Europe", SNAPSHOT)
    with pytest.raises(InvalidRequest, match="region 'westeurope'"):
        pr.check_region("westeurope", "eastus", SNAPSHOT)


# --- plans, over the in-memory Azure ------------------------------------------------------


@pytest.fixture
def azure() -> InMemoryAzure:
    fake = InMemoryAzure()
    fake.add_elastic_san(WEST, location="westeurope", base_size_tib=2)
    fake.add_elastic_san(EAST, location="eastus", base_size_tib=2)
    fake.add_volume_group(WEST_VG)
    fake.add_volume_group(EAST_VG)
    fake.add_volume(SOURCE, 10)
    fake.add_snapshot(SNAPSHOT, SOURCE)
    return fake


def params(**values: str) -> p.StorageClassParameters:
    return p.parse_storage_class(values)


async def plan(
    azure: InMemoryAzure, source: object = None, required: int = 0, **values: str
) -> pr.VolumePlan:
    return await pr.plan_volume(
        azure,
        name="pvc-1",
        params=params(**values),
        source=source,  # type: ignore[arg-type]
        size=size(required),
        managed=[WEST, EAST],
    )


async def test_an_empty_volume_goes_to_the_first_managed_sans_only_group(azure: InMemoryAzure) -> None:
    planned = await plan(azure, required=5 * GIB)
    assert planned == pr.VolumePlan(WEST_VG.volume("pvc-1"), 5, None, None)


async def test_a_restore_goes_next_to_its_snapshot_unless_the_class_says_otherwise(
    azure: InMemoryAzure,
) -> None:
    restored = await plan(azure, SNAPSHOT)
    assert restored == pr.VolumePlan(WEST_VG.volume("pvc-1"), 10, SNAPSHOT, 10)
    azure.add_volume_group(WEST.volume_group("vg2"))
    elsewhere = await plan(azure, SNAPSHOT, elasticSanId="west", volumeGroup="vg2")
    assert elsewhere.volume.volume_group == WEST.volume_group("vg2")


async def test_a_restore_into_a_san_of_another_region_is_refused(azure: InMemoryAzure) -> None:
    with pytest.raises(InvalidRequest, match="region 'westeurope' but the target Elastic SAN is in 'eastus'"):
        await plan(azure, SNAPSHOT, elasticSanId=EAST.arm_id, volumeGroup="vg1")


async def test_a_restore_of_an_unfinished_or_failed_snapshot_is_refused(azure: InMemoryAzure) -> None:
    azure.set_snapshot_state(SNAPSHOT, "Creating")
    with pytest.raises(Transient, match="Creating, not Succeeded"):
        await plan(azure, SNAPSHOT)
    azure.set_snapshot_state(SNAPSHOT, "Failed")
    with pytest.raises(SnapshotFailed):
        await plan(azure, SNAPSHOT)


async def test_a_restore_smaller_than_its_snapshot_is_refused(azure: InMemoryAzure) -> None:
    with pytest.raises(InvalidRequest, match="smaller than the source snapshot's 10Gi"):
        await plan(azure, SNAPSHOT, required=5 * GIB)


async def test_a_managed_disk_snapshot_is_restored_once_copied_in_its_own_region(
    azure: InMemoryAzure,
) -> None:
    await azure.create_disk_snapshot(DISK, SNAPSHOT, location="westeurope")
    with pytest.raises(Transient, match="still being copied"):
        await plan(azure, DISK, elasticSanId="west", volumeGroup="vg1")
    azure.advance(azure.export_seconds + 1)
    with pytest.raises(InvalidRequest, match="same region"):
        await plan(azure, DISK, elasticSanId="east", volumeGroup="vg1")
    planned = await plan(azure, DISK, elasticSanId="west", volumeGroup="vg1")
    assert planned == pr.VolumePlan(WEST_VG.volume("pvc-1"), 10, DISK, 10)


async def test_a_bad_group_parameter_names_the_parameter(azure: InMemoryAzure) -> None:
    with pytest.raises(p.InvalidParameter, match=p.VOLUME_GROUP):
        await plan(azure, volumeGroup="a/b")
