"""InMemoryAzure keeps the service's rules: names, idempotency, capacity, limits, regions, exports."""

from __future__ import annotations

import re

import pytest

from elasticsan_snapshotter.azure.fake import InMemoryAzure, ManualClock
from elasticsan_snapshotter.domain.decisions import VolumeHasSnapshots
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    CapacityExhausted,
    InvalidRequest,
    LimitReached,
    NotFound,
    Throttled,
    Transient,
)
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId

pytestmark = pytest.mark.unit

SAN = ElasticSanId("sub", "rg", "san1")
GROUP = SAN.volume_group("vg1")
VOLUME = GROUP.volume("vol1")
FAR_SAN = ElasticSanId("sub", "rg", "far")
NEAR_SAN = ElasticSanId("sub", "rg2", "near")
DISK = DiskSnapshotId("sub", "rg", "export1")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def azure(clock: ManualClock) -> InMemoryAzure:
    fake = InMemoryAzure(clock=clock, export_seconds=100)
    fake.add_elastic_san(SAN, location="westeurope", base_size_tib=1, extended_size_tib=1)
    fake.add_volume_group(GROUP)
    fake.add_elastic_san(FAR_SAN, location="eastus")
    fake.add_volume_group(FAR_SAN.volume_group("vg1"))
    fake.add_elastic_san(NEAR_SAN, location="West Europe")
    fake.add_volume_group(NEAR_SAN.volume_group("vg1"))
    return fake


# --- Elastic SANs and volumes ---------------------------------------------------------------


async def test_listing_sans_and_groups(azure: InMemoryAzure) -> None:
    sans = {s.id: s for s in await azure.list_elastic_sans()}
    assert set(sans) == {SAN, FAR_SAN, NEAR_SAN}
    assert sans[SAN].total_size_tib == 2
    assert await azure.list_volume_groups(SAN) == [GROUP]
    with pytest.raises(NotFound):
        await azure.list_volume_groups(ElasticSanId("sub", "rg", "nope"))


async def test_volume_has_a_storage_target_in_the_service_format(azure: InMemoryAzure) -> None:
    info = await azure.create_volume(VOLUME, 10)
    assert re.fullmatch(
        r"iqn\.2023-03\.net\.windows\.core\.blob\.ElasticSan\.es-[a-z0-9]{12}:vol1", info.target_iqn
    )
    es_id = info.target_iqn.split(".es-")[1].split(":")[0]
    assert info.target_portal_hostname == f"es-{es_id}.z1.blob.storage.azure.net"
    assert info.target_portal_port == 3260
    assert info.provisioning_state == "Succeeded"
    assert await azure.get_volume(VOLUME) == info
    other = await azure.create_volume(GROUP.volume("vol2"), 10)
    assert other.target_iqn != info.target_iqn


async def test_create_volume_is_idempotent_by_name(azure: InMemoryAzure) -> None:
    first = await azure.create_volume(VOLUME, 10)
    assert await azure.create_volume(VOLUME, 10) == first
    with pytest.raises(AlreadyExists, match="10 GiB"):
        await azure.create_volume(VOLUME, 20)
    assert (await azure.get_elastic_san(SAN)).total_volume_size_gib == 10


async def test_create_volume_checks_names_sizes_and_parents(azure: InMemoryAzure) -> None:
    with pytest.raises(InvalidRequest, match="not a valid Elastic SAN volume name"):
        await azure.create_volume(GROUP.volume("Bad_Name"), 10)
    with pytest.raises(InvalidRequest, match="64 TiB"):
        await azure.create_volume(VOLUME, 0)
    with pytest.raises(NotFound, match="volume group"):
        await azure.create_volume(SAN.volume_group("nogroup").volume("vol1"), 10)


async def test_volumes_must_fit_the_san(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 2000)
    with pytest.raises(CapacityExhausted, match="48 GiB free") as caught:
        await azure.create_volume(GROUP.volume("vol2"), 49)
    assert caught.value.retryable
    await azure.create_volume(GROUP.volume("vol2"), 48)
    assert azure.used_gib(SAN) == azure.capacity_gib(SAN) == 2048


async def test_growing_the_san_makes_room(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 2048)
    azure.set_capacity(SAN, base_size_tib=3)
    await azure.create_volume(GROUP.volume("vol2"), 1024)


async def test_list_volumes_and_unknown_group(azure: InMemoryAzure) -> None:
    await azure.create_volume(GROUP.volume("vol2"), 1)
    await azure.create_volume(VOLUME, 1)
    assert [v.id.name for v in await azure.list_volumes(GROUP)] == ["vol1", "vol2"]
    with pytest.raises(NotFound):
        await azure.list_volumes(SAN.volume_group("nogroup"))


async def test_delete_volume_twice_is_fine(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.delete_volume(VOLUME, delete_snapshots=False)
    await azure.delete_volume(VOLUME, delete_snapshots=False)
    with pytest.raises(NotFound):
        await azure.get_volume(VOLUME)


async def test_delete_volume_with_snapshots_needs_a_decision(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    with pytest.raises(VolumeHasSnapshots, match="s1"):
        await azure.delete_volume(VOLUME, delete_snapshots=False)
    assert (await azure.get_volume(VOLUME)).id == VOLUME
    await azure.delete_volume(VOLUME, delete_snapshots=True)
    assert await azure.list_snapshots(GROUP) == []
    assert azure.used_gib(SAN) == 0


# --- snapshots ------------------------------------------------------------------------------


async def test_create_snapshot_adopts_same_source_and_refuses_another(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.create_volume(GROUP.volume("vol2"), 10)
    snapshot = GROUP.snapshot("snapshot-1")
    first = await azure.create_snapshot(snapshot, VOLUME)
    assert first.source_volume == VOLUME
    assert first.source_volume_size_gib == 10
    assert first.provisioning_state == "Succeeded"
    assert first.created_at is not None
    assert await azure.create_snapshot(snapshot, VOLUME) == first
    with pytest.raises(AlreadyExists, match="vol1"):
        await azure.create_snapshot(snapshot, GROUP.volume("vol2"))
    assert len(await azure.list_snapshots(GROUP)) == 1


async def test_snapshot_needs_a_source_a_valid_name_and_its_volume_group(azure: InMemoryAzure) -> None:
    with pytest.raises(NotFound):
        await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    await azure.create_volume(VOLUME, 10)
    with pytest.raises(InvalidRequest, match="not a valid Elastic SAN snapshot name"):
        await azure.create_snapshot(GROUP.snapshot("Upper"), VOLUME)
    azure.add_volume_group(SAN.volume_group("vg2"))
    with pytest.raises(InvalidRequest, match="volume group of its source"):
        await azure.create_snapshot(SAN.volume_group("vg2").snapshot("s1"), VOLUME)


async def test_delete_snapshot_twice_and_get_after(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    await azure.delete_snapshot(GROUP.snapshot("s1"))
    await azure.delete_snapshot(GROUP.snapshot("s1"))
    with pytest.raises(NotFound):
        await azure.get_snapshot(GROUP.snapshot("s1"))


async def test_list_snapshots_filters_by_volume_without_case(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.create_volume(GROUP.volume("vol2"), 10)
    await azure.create_snapshot(GROUP.snapshot("b"), VOLUME)
    await azure.create_snapshot(GROUP.snapshot("a"), GROUP.volume("vol2"))
    await azure.create_snapshot(GROUP.snapshot("c"), VOLUME)
    assert [s.id.name for s in await azure.list_snapshots(GROUP)] == ["a", "b", "c"]
    assert [s.id.name for s in await azure.list_snapshots(GROUP, "VOL1")] == ["b", "c"]


async def test_seven_snapshots_per_five_minutes(azure: InMemoryAzure, clock: ManualClock) -> None:
    await azure.create_volume(VOLUME, 10)
    for i in range(7):
        await azure.create_snapshot(GROUP.snapshot(f"s{i}"), VOLUME)
        clock.advance(10)
    with pytest.raises(Throttled) as caught:
        await azure.create_snapshot(GROUP.snapshot("s7"), VOLUME)
    assert caught.value.retry_after == pytest.approx(230.0, abs=0.01)
    # Adopting an existing snapshot is not a new one and is never throttled.
    await azure.create_snapshot(GROUP.snapshot("s0"), VOLUME)
    # Other volumes have their own budget.
    await azure.create_volume(GROUP.volume("vol2"), 10)
    await azure.create_snapshot(GROUP.snapshot("other"), GROUP.volume("vol2"))
    clock.advance(caught.value.retry_after or 0)
    await azure.create_snapshot(GROUP.snapshot("s7"), VOLUME)


async def test_at_most_two_hundred_snapshots_per_volume(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    for i in range(200):
        azure.add_snapshot(GROUP.snapshot(f"s{i}"), VOLUME)
    with pytest.raises(LimitReached, match="200"):
        await azure.create_snapshot(GROUP.snapshot("one-more"), VOLUME)
    await azure.delete_snapshot(GROUP.snapshot("s0"))
    await azure.create_snapshot(GROUP.snapshot("one-more"), VOLUME)


async def test_first_snapshot_is_free_later_ones_hold_the_changes(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 100)
    azure.set_written(VOLUME, 30)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert azure.used_gib(SAN) == 100
    azure.set_written(VOLUME, 30)
    await azure.create_snapshot(GROUP.snapshot("s2"), VOLUME)
    assert azure.used_gib(SAN) == 130
    await azure.create_snapshot(GROUP.snapshot("s3"), VOLUME)  # nothing written since s2
    assert azure.used_gib(SAN) == 130
    await azure.delete_snapshot(GROUP.snapshot("s2"))
    assert azure.used_gib(SAN) == 100


async def test_a_snapshot_that_does_not_fit_is_refused(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 2040)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    azure.set_written(VOLUME, 9)
    with pytest.raises(CapacityExhausted, match="8 GiB free"):
        await azure.create_snapshot(GROUP.snapshot("s2"), VOLUME)
    with pytest.raises(NotFound):
        await azure.get_snapshot(GROUP.snapshot("s2"))


async def test_snapshot_state_can_be_set_for_readiness_tests(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    azure.set_snapshot_state(GROUP.snapshot("s1"), "Failed")
    assert (await azure.get_snapshot(GROUP.snapshot("s1"))).provisioning_state == "Failed"


# --- volumes from snapshots -----------------------------------------------------------------


async def test_volume_from_snapshot_in_the_same_region(azure: InMemoryAzure) -> None:
    await azure.create_volume(VOLUME, 10)
    snapshot = GROUP.snapshot("s1")
    await azure.create_snapshot(snapshot, VOLUME)
    restored = await azure.create_volume(GROUP.volume("restored"), 10, snapshot)
    assert restored.source == snapshot
    elsewhere = NEAR_SAN.volume_group("vg1").volume("restored")  # another SAN, same region
    assert (await azure.create_volume(elsewhere, 12, snapshot)).size_gib == 12
    assert await azure.create_volume(GROUP.volume("restored"), 10, snapshot) == restored
    with pytest.raises(AlreadyExists, match="no source"):
        await azure.create_volume(GROUP.volume("restored"), 10)


async def test_volume_from_snapshot_refuses_other_regions_smaller_sizes_and_missing_sources(
    azure: InMemoryAzure,
) -> None:
    await azure.create_volume(VOLUME, 10)
    snapshot = GROUP.snapshot("s1")
    await azure.create_snapshot(snapshot, VOLUME)
    with pytest.raises(InvalidRequest, match="same region"):
        await azure.create_volume(FAR_SAN.volume_group("vg1").volume("rst"), 10, snapshot)
    with pytest.raises(InvalidRequest, match="at least 10 GiB"):
        await azure.create_volume(GROUP.volume("rst"), 9, snapshot)
    with pytest.raises(NotFound):
        await azure.create_volume(GROUP.volume("rst"), 10, GROUP.snapshot("missing"))


# --- export ---------------------------------------------------------------------------------


async def exported(azure: InMemoryAzure, size_gib: int = 10) -> None:
    await azure.create_volume(VOLUME, size_gib)
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    await azure.create_disk_snapshot(DISK, GROUP.snapshot("s1"), location="westeurope", tags={"k": "v"})


async def test_export_progress_follows_the_clock(azure: InMemoryAzure, clock: ManualClock) -> None:
    await exported(azure)
    info = await azure.get_disk_snapshot(DISK)
    assert (info.completion_percent, info.provisioning_state, info.size_gib) == (0.0, "Succeeded", 10)
    assert info.source == GROUP.snapshot("s1")
    assert info.tags == {"k": "v"}
    clock.advance(25)
    assert (await azure.get_disk_snapshot(DISK)).completion_percent == 25.0
    azure.advance(100)  # the fake's own advance works on top of any clock
    assert (await azure.get_disk_snapshot(DISK)).completion_percent == 100.0


async def test_export_is_idempotent_by_name(azure: InMemoryAzure) -> None:
    await exported(azure)
    again = await azure.create_disk_snapshot(DISK, GROUP.snapshot("s1"), location="westeurope")
    assert again.id == DISK
    await azure.create_snapshot(GROUP.snapshot("s2"), VOLUME)
    with pytest.raises(AlreadyExists, match="s1"):
        await azure.create_disk_snapshot(DISK, GROUP.snapshot("s2"), location="westeurope")


async def test_export_rules(azure: InMemoryAzure) -> None:
    azure.set_capacity(SAN, base_size_tib=5)
    await azure.create_volume(VOLUME, 4097)
    await azure.create_volume(GROUP.volume("small"), 10)
    await azure.create_snapshot(GROUP.snapshot("big"), VOLUME)
    await azure.create_snapshot(GROUP.snapshot("small"), GROUP.volume("small"))
    with pytest.raises(InvalidRequest, match="4096 GiB"):
        await azure.create_disk_snapshot(DISK, GROUP.snapshot("big"), location="westeurope")
    with pytest.raises(InvalidRequest, match="same region"):
        await azure.create_disk_snapshot(DISK, GROUP.snapshot("small"), location="eastus")
    with pytest.raises(InvalidRequest, match="sku"):
        await azure.create_disk_snapshot(DISK, GROUP.snapshot("small"), location="westeurope", sku="Ultra")
    with pytest.raises(InvalidRequest, match="managed-disk snapshot name"):
        await azure.create_disk_snapshot(
            DiskSnapshotId("sub", "rg", "bad.name"), GROUP.snapshot("small"), location="westeurope"
        )
    with pytest.raises(NotFound):
        await azure.create_disk_snapshot(DISK, GROUP.snapshot("missing"), location="westeurope")
    await azure.create_disk_snapshot(DISK, GROUP.snapshot("small"), location="West Europe")


async def test_export_failure_shows_as_copy_error(azure: InMemoryAzure) -> None:
    await exported(azure)
    azure.fail_export(DISK, "source went away")
    assert (await azure.get_disk_snapshot(DISK)).copy_error == "source went away"


async def test_delete_disk_snapshot_twice(azure: InMemoryAzure) -> None:
    await exported(azure)
    await azure.delete_disk_snapshot(DISK)
    await azure.delete_disk_snapshot(DISK)
    with pytest.raises(NotFound):
        await azure.get_disk_snapshot(DISK)


async def test_export_outlives_the_volume(azure: InMemoryAzure) -> None:
    await exported(azure)
    await azure.delete_volume(VOLUME, delete_snapshots=True)
    assert (await azure.get_disk_snapshot(DISK)).id == DISK


async def test_volume_from_a_disk_snapshot_waits_for_the_copy(
    azure: InMemoryAzure, clock: ManualClock
) -> None:
    await exported(azure)
    target = NEAR_SAN.volume_group("vg1").volume("imported")
    with pytest.raises(Transient, match="still being copied"):
        await azure.create_volume(target, 10, DISK)
    clock.advance(100)
    with pytest.raises(InvalidRequest, match="at least 10 GiB"):
        await azure.create_volume(target, 5, DISK)
    with pytest.raises(InvalidRequest, match="same region"):
        await azure.create_volume(FAR_SAN.volume_group("vg1").volume("imported"), 10, DISK)
    assert (await azure.create_volume(target, 10, DISK)).source == DISK


async def test_an_injectable_real_clock_is_used_for_times(clock: ManualClock) -> None:
    azure = InMemoryAzure(clock=clock)
    azure.add_elastic_san(SAN)
    azure.add_volume_group(GROUP)
    azure.add_volume(VOLUME, 1)
    info = await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert info.created_at is not None
    assert info.created_at.timestamp() == clock.now
