"""The Azure port contract: the same behaviour from the in-memory fake and from the real adapter.

Each test runs against ``InMemoryAzure`` and against ``ElasticSanAzure`` over HTTPS to the
emulator. Blocks guarded by ``backend.is_emulator`` also assert what only HTTP shows: how
many requests of which kind reached the service, through the emulator's counters.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from contract_backends import (
    EXPORT_SECONDS,
    RETRY_STATUS,
    Backend,
    EmulatorBackend,
    emulator_config,
    start_emulator,
    unique,
)

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.azure.client import ElasticSanAzure
from elasticsan_snapshotter.azure.config import PacingConfig
from elasticsan_snapshotter.domain.decisions import SNAPSHOT_RATE_WINDOW, VolumeHasSnapshots
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    CapacityExhausted,
    Forbidden,
    InvalidRequest,
    LimitReached,
    NotFound,
    Throttled,
    Transient,
)
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.ports import SUCCEEDED, DiskSnapshotInfo


async def a_volume(backend: Backend, size_gib: int = 10, *, san: str = "contract") -> VolumeId:
    volume = backend.new_volume(san)
    await backend.port.create_volume(volume, size_gib)
    return volume


def disk_snapshot(backend: Backend) -> DiskSnapshotId:
    return DiskSnapshotId(backend.subscription, "rg", unique("export"))


async def wait_for_export(backend: Backend, target: DiskSnapshotId) -> list[float]:
    """Read the export's progress until it reports 100 %, returning every value seen."""
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = await backend.port.get_disk_snapshot(target)
        seen.append(info.completion_percent)
        if info.completion_percent >= 100:
            return seen
        await backend.elapse(EXPORT_SECONDS / 4)
    raise AssertionError(f"export {target.name} stuck at {seen[-1]}%")


# -- Elastic SANs, volume groups, volumes -------------------------------------------------


async def test_lists_the_sans_and_volume_groups_it_manages(backend: Backend) -> None:
    sans = {san.id: san for san in await backend.port.list_elastic_sans()}
    contract = sans[backend.san("contract")]
    assert contract.location == "westeurope"
    assert contract.total_size_tib == 8
    assert contract.provisioning_state == SUCCEEDED
    groups = await backend.port.list_volume_groups(backend.san("contract"))
    assert {g.name for g in groups} >= {"vg1", "vg-list"}
    assert (await backend.port.get_elastic_san(backend.san("tiny"))).total_size_tib == 1


async def test_create_volume_is_idempotent_by_name(backend: Backend) -> None:
    volume = backend.new_volume()
    created = await backend.port.create_volume(volume, 10)
    assert created.id == volume
    assert created.size_gib == 10
    assert created.source is None
    assert created.target_iqn.endswith(f":{volume.name}")
    assert created.target_portal_port == 3260
    again = await backend.port.create_volume(volume, 10)
    assert again == created
    assert await backend.port.get_volume(volume) == created
    with pytest.raises(AlreadyExists):
        await backend.port.create_volume(volume, 20)
    if isinstance(backend, EmulatorBackend):
        assert await backend.count(method="PUT", kind="volumes") == 1


# -- snapshots: create, adopt, conflict, ready ---------------------------------------------


async def test_create_snapshot_then_adopt_then_conflict(backend: Backend) -> None:
    volume = await a_volume(backend)
    other = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)

    created = await backend.port.create_snapshot(snapshot, volume)
    assert created.id == snapshot
    assert created.source_volume == volume
    assert created.source_volume_size_gib == 10
    assert created.provisioning_state == SUCCEEDED
    assert created.created_at is not None

    # A retry (same name, same source, even spelled in other case) adopts what exists.
    shouted = VolumeId(volume.volume_group, volume.name.upper())
    adopted = await backend.port.create_snapshot(snapshot, shouted)
    assert adopted.id == created.id
    assert adopted.source_volume == volume

    with pytest.raises(AlreadyExists) as caught:
        await backend.port.create_snapshot(snapshot, other)
    assert caught.value.final

    listed = await backend.port.list_snapshots(volume.volume_group, volume.name)
    assert [s.id for s in listed] == [snapshot]
    if isinstance(backend, EmulatorBackend):
        # One PUT in all: the adoption and the conflict were decided by a GET.
        assert await backend.count(method="PUT", kind="volumeSnapshots") == 1


async def test_a_fresh_snapshot_create_costs_one_put_and_two_reads(backend: Backend) -> None:
    volume = await a_volume(backend)
    if isinstance(backend, EmulatorBackend):
        await backend.admin_call("reset_counters")  # count the snapshot's requests only
    snapshot = backend.new_snapshot(volume)
    created = await backend.port.create_snapshot(snapshot, volume, fresh=True)
    assert created.provisioning_state == SUCCEEDED
    assert created.source_volume == volume
    if backend.is_emulator:
        # No lookup by name first; the PUT's own long-running operation: one poll, one final GET.
        assert await backend.count(method="PUT", kind="volumeSnapshots") == 1
        assert await backend.count(method="GET", kind="volumeSnapshots", status=404) == 0
        reads = await backend.count(method="GET", kind="volumeSnapshots")
        assert reads + await backend.count(method="GET", kind="operations") <= 2


async def test_snapshot_is_ready_and_readable(backend: Backend) -> None:
    volume = await a_volume(backend, 16)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    got = await backend.port.get_snapshot(snapshot)
    assert got.provisioning_state == SUCCEEDED
    assert got.source_volume == volume
    assert got.source_volume_size_gib == 16


async def test_delete_snapshot_twice(backend: Backend) -> None:
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    await backend.port.delete_snapshot(snapshot)
    with pytest.raises(NotFound):
        await backend.port.get_snapshot(snapshot)
    await backend.port.delete_snapshot(snapshot)  # NotFound counts as deleted
    assert await backend.port.list_snapshots(volume.volume_group, volume.name) == []


async def test_list_snapshots_with_and_without_volume_filter(backend: Backend) -> None:
    group = backend.volume_group("contract", "vg-list")
    first = group.volume(unique("vol"))
    second = group.volume(unique("vol"))
    for volume in (first, second):
        await backend.port.create_volume(volume, 10)
    taken = {
        await backend.port.create_snapshot(group.snapshot(unique("snap")), first),
        await backend.port.create_snapshot(group.snapshot(unique("snap")), first),
        await backend.port.create_snapshot(group.snapshot(unique("snap")), second),
    }
    everything = await backend.port.list_snapshots(group)
    assert {s.id for s in taken} <= {s.id for s in everything}
    of_first = await backend.port.list_snapshots(group, first.name)
    assert len(of_first) == 2
    assert {s.source_volume for s in of_first} == {first}
    assert [s.source_volume for s in await backend.port.list_snapshots(group, second.name)] == [second]
    assert await backend.port.list_snapshots(group, "no-such-volume") == []


# -- restores ----------------------------------------------------------------------------


async def test_volume_from_snapshot(backend: Backend) -> None:
    volume = await a_volume(backend, 12)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    restored = backend.new_volume()
    made = await backend.port.create_volume(restored, 12, snapshot)
    assert made.source == snapshot
    assert made.size_gib == 12
    assert (await backend.port.get_volume(restored)).source == snapshot
    assert await backend.port.create_volume(restored, 12, snapshot) == made
    with pytest.raises(AlreadyExists):
        await backend.port.create_volume(restored, 12, None)
    with pytest.raises(InvalidRequest):
        await backend.port.create_volume(backend.new_volume(), 11, snapshot)  # smaller than the source
    with pytest.raises(InvalidRequest):
        await backend.port.create_volume(backend.new_volume("faraway"), 12, snapshot)  # other region


async def test_export_progress_then_volume_from_disk_snapshot(backend: Backend) -> None:
    volume = await a_volume(backend, 8)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    target = disk_snapshot(backend)

    started = await backend.port.create_disk_snapshot(
        target, snapshot, location="westeurope", incremental=True, tags={"owner": "contract"}
    )
    assert isinstance(started, DiskSnapshotInfo)
    assert started.source == snapshot
    assert started.location.lower() == "westeurope"
    assert started.tags == {"owner": "contract"}
    assert 0 <= started.completion_percent < 100
    # Idempotent by name; another source is refused.
    assert (await backend.port.create_disk_snapshot(target, snapshot, location="westeurope")).id == target
    other = backend.new_snapshot(volume)
    await backend.port.create_snapshot(other, volume)
    with pytest.raises(AlreadyExists):
        await backend.port.create_disk_snapshot(target, other, location="westeurope")

    # A volume from an export still being copied is refused for now, not for ever.
    with pytest.raises(Transient):
        await backend.port.create_volume(backend.new_volume(), 8, target)

    progress = await wait_for_export(backend, target)
    assert progress == sorted(progress)
    assert progress[-1] == 100

    restored = backend.new_volume()
    made = await backend.port.create_volume(restored, 8, target)
    assert made.source == target

    await backend.port.delete_disk_snapshot(target)
    with pytest.raises(NotFound):
        await backend.port.get_disk_snapshot(target)
    await backend.port.delete_disk_snapshot(target)


async def test_export_to_another_region_is_refused(backend: Backend) -> None:
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    with pytest.raises(InvalidRequest):
        await backend.port.create_disk_snapshot(disk_snapshot(backend), snapshot, location="northeurope")


# -- volume deletion and its snapshots ----------------------------------------------------


async def test_delete_volume_needs_an_explicit_decision_about_snapshots(backend: Backend) -> None:
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    await backend.port.create_snapshot(snapshot, volume)
    with pytest.raises(VolumeHasSnapshots):
        await backend.port.delete_volume(volume, delete_snapshots=False)
    assert (await backend.port.get_snapshot(snapshot)).id == snapshot

    await backend.port.delete_volume(volume, delete_snapshots=True)
    with pytest.raises(NotFound):
        await backend.port.get_volume(volume)
    with pytest.raises(NotFound):
        await backend.port.get_snapshot(snapshot)
    await backend.port.delete_volume(volume, delete_snapshots=False)  # gone already: fine


async def test_delete_volume_without_snapshots(backend: Backend) -> None:
    volume = await a_volume(backend)
    await backend.port.delete_volume(volume, delete_snapshots=False)
    with pytest.raises(NotFound):
        await backend.port.get_volume(volume)


# -- capacity and limits ----------------------------------------------------------------


async def test_capacity_exhausted_for_a_volume(backend: Backend) -> None:
    with pytest.raises(CapacityExhausted) as caught:
        await backend.port.create_volume(backend.new_volume("tiny"), 1025)
    assert caught.value.retryable


async def test_capacity_exhausted_for_a_snapshot(backend: Backend) -> None:
    volume = await a_volume(backend, 1000, san="tiny")
    try:
        await backend.port.create_snapshot(backend.new_snapshot(volume), volume)  # the first is free
        await backend.set_written(volume, 100)  # the next would hold 100 GiB; 24 are free
        with pytest.raises(CapacityExhausted) as caught:
            await backend.port.create_snapshot(backend.new_snapshot(volume), volume)
        assert caught.value.retryable
    finally:
        await backend.port.delete_volume(volume, delete_snapshots=True)


async def test_limit_reached(backend: Backend) -> None:
    volume = await a_volume(backend)
    await backend.fill_snapshots(volume)
    assert len(await backend.port.list_snapshots(volume.volume_group, volume.name)) == backend.snapshot_limit
    with pytest.raises(LimitReached) as caught:
        await backend.port.create_snapshot(backend.new_snapshot(volume), volume)
    assert caught.value.retryable
    assert len(await backend.port.list_snapshots(volume.volume_group, volume.name)) == backend.snapshot_limit


# -- throttling and every other error class -------------------------------------------------


async def test_a_short_429_storm_is_absorbed(backend: Backend) -> None:
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    await backend.throttle_snapshot_puts(RETRY_STATUS)
    created = await backend.port.create_snapshot(snapshot, volume)
    assert created.provisioning_state == SUCCEEDED
    assert len(await backend.port.list_snapshots(volume.volume_group, volume.name)) == 1
    # Each 429 was retried after its Retry-After: 3 throttled answers, then the one that worked.
    assert await backend.throttled_snapshot_puts() == RETRY_STATUS
    if isinstance(backend, EmulatorBackend):
        assert await backend.count(method="PUT", kind="volumeSnapshots") == RETRY_STATUS + 1


async def test_a_long_429_storm_surfaces_as_throttled_and_a_retry_makes_one_snapshot(
    backend: Backend,
) -> None:
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    storm = RETRY_STATUS + 2
    await backend.throttle_snapshot_puts(storm)
    with pytest.raises(Throttled) as caught:
        await backend.port.create_snapshot(snapshot, volume)
    assert caught.value.retryable
    assert caught.value.retry_after == 1.0
    # First call: 1 + RETRY_STATUS answers, all 429.
    assert await backend.throttled_snapshot_puts() == RETRY_STATUS + 1
    # The caller retries later, as the operator does on a retryable error: one more 429, then success.
    created = await backend.port.create_snapshot(snapshot, volume)
    assert created.id == snapshot
    assert [s.id for s in await backend.port.list_snapshots(volume.volume_group, volume.name)] == [snapshot]
    assert await backend.throttled_snapshot_puts() == storm
    if isinstance(backend, EmulatorBackend):
        assert await backend.count(method="PUT", kind="volumeSnapshots") == storm + 1
        assert await backend.count(method="GET", kind="volumeSnapshots", status=404) == 2


async def test_the_per_volume_snapshot_rate_throttles_before_the_service_does(backend: Backend) -> None:
    volume = await a_volume(backend)
    other = await a_volume(backend)
    # Deleted snapshots still count: the limit is on new snapshots per window, not on those that exist.
    for _ in range(backend.snapshot_rate):
        snapshot = backend.new_snapshot(volume)
        await backend.port.create_snapshot(snapshot, volume)
        await backend.port.delete_snapshot(snapshot)
    with pytest.raises(Throttled) as caught:
        await backend.port.create_snapshot(backend.new_snapshot(volume), volume)
    assert caught.value.retryable
    assert caught.value.retry_after is not None
    assert SNAPSHOT_RATE_WINDOW - 10 < caught.value.retry_after <= SNAPSHOT_RATE_WINDOW + 1
    assert await backend.port.list_snapshots(volume.volume_group, volume.name) == []
    # Another volume has a window of its own.
    await backend.port.create_snapshot(backend.new_snapshot(other), other)
    assert await backend.throttled_snapshot_puts() == 0
    if isinstance(backend, EmulatorBackend):
        # The adapter's pace matches the service's: the refused create never reached it.
        assert await backend.count(method="PUT", kind="volumeSnapshots") == backend.snapshot_rate + 1


async def test_server_errors_are_transient(backend: Backend) -> None:
    volume = await a_volume(backend)
    await backend.fail_reads_of_volumes(503, RETRY_STATUS + 1)
    with pytest.raises(Transient) as caught:
        await backend.port.get_volume(volume)
    assert caught.value.retryable
    assert await backend.failed_volume_reads(503) == RETRY_STATUS + 1
    assert (await backend.port.get_volume(volume)).id == volume
    assert await backend.failed_volume_reads(503) == RETRY_STATUS + 1


async def test_not_found_for_every_kind(backend: Backend) -> None:
    group = backend.volume_group()
    with pytest.raises(NotFound):
        await backend.port.get_volume(group.volume(unique("missing")))
    with pytest.raises(NotFound):
        await backend.port.get_snapshot(group.snapshot(unique("missing")))
    with pytest.raises(NotFound):
        await backend.port.get_disk_snapshot(disk_snapshot(backend))
    with pytest.raises(NotFound):
        await backend.port.get_elastic_san(backend.san("nosuchsan"))
    with pytest.raises(NotFound):
        await backend.port.create_snapshot(group.snapshot(unique("snap")), group.volume(unique("missing")))


async def test_invalid_names_are_invalid_requests(backend: Backend) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await backend.port.create_volume(backend.volume_group().volume("Bad_Name"), 10)
    assert caught.value.final
    volume = await a_volume(backend)
    with pytest.raises(InvalidRequest):
        await backend.port.create_snapshot(volume.volume_group.snapshot("UPPER-case"), volume)


async def test_a_reader_identity_is_forbidden_to_write(backend: Backend) -> None:
    volume = await a_volume(backend)
    async with backend.read_only_port() as reader:
        assert (await reader.get_volume(volume)).id == volume
        with pytest.raises(Forbidden) as caught:
            await reader.create_snapshot(backend.new_snapshot(volume), volume)
        assert caught.value.final
    assert await backend.port.list_snapshots(volume.volume_group, volume.name) == []


# -- over HTTP only ------------------------------------------------------------------------


@pytest.mark.integration
async def test_a_lost_response_after_the_put_never_makes_a_second_snapshot(
    emulator_backend: EmulatorBackend,
) -> None:
    backend = emulator_backend
    volume = await a_volume(backend)
    snapshot = backend.new_snapshot(volume)
    # The service applies the PUT, then the connection drops before the answer (a timeout, a crash).
    await backend.admin_call("set_faults", "put:volumeSnapshots:drop-after:1.0:1")
    created = await backend.port.create_snapshot(snapshot, volume)
    assert created.id == snapshot
    assert [s.id for s in await backend.port.list_snapshots(volume.volume_group, volume.name)] == [snapshot]
    assert await backend.count(method="PUT", kind="volumeSnapshots") == 2


@pytest.mark.integration
async def test_calls_are_counted_in_metrics(emulator_backend: EmulatorBackend) -> None:
    def value(operation: str, outcome: str) -> float:
        sample = metrics.REGISTRY.get_sample_value(
            "elasticsan_snapshotter_azure_calls_total", {"operation": operation, "outcome": outcome}
        )
        return sample or 0.0

    before_get, before_put = value("snapshot.get", "NotFound"), value("snapshot.create", "Success")
    volume = await a_volume(emulator_backend)
    await emulator_backend.port.create_snapshot(emulator_backend.new_snapshot(volume), volume)
    assert value("snapshot.get", "NotFound") == before_get + 1
    assert value("snapshot.create", "Success") == before_put + 1
    rendered = metrics.render().decode()
    assert 'elasticsan_snapshotter_azure_call_duration_seconds_count{operation="snapshot.create"}' in rendered


@pytest.mark.integration
async def test_the_per_volume_snapshot_pace_queues_instead_of_failing(tmp_path: Path) -> None:
    # A service that takes 2 snapshots per volume per 3 s, and an adapter paced to match.
    process = await asyncio.to_thread(
        start_emulator, tmp_path / "paced", "--snapshot-rate-limit", "2", "--snapshot-rate-window", "3"
    )
    pacing = PacingConfig(
        snapshots_per_volume=2, snapshot_window_seconds=3.0, snapshot_window_margin_seconds=0.5
    )
    adapter = ElasticSanAzure(emulator_config(process.info, pacing=pacing))
    try:
        group = ElasticSanId(process.info.subscription_id, "rg", "contract").volume_group("vg1")
        volume = group.volume(unique("vol"))
        await adapter.create_volume(volume, 10)
        started = time.monotonic()
        for _ in range(3):
            await adapter.create_snapshot(group.snapshot(unique("snap")), volume)
        elapsed = time.monotonic() - started
        assert elapsed >= 3.0  # the third create waited for the window
        assert len(await adapter.list_snapshots(group, volume.name)) == 3
        assert process.admin.count(method="PUT", kind="volumeSnapshots", status=429) == 0
        assert process.admin.count(method="PUT", kind="volumeSnapshots") == 3
    finally:
        await adapter.close()
        await asyncio.to_thread(process.stop)
