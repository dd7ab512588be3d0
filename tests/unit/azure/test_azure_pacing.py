"""The write budget, the per-volume snapshot pace and the concurrency cap, on an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from elasticsan_snapshotter.azure.config import PacingConfig
from elasticsan_snapshotter.azure.pacing import Pacing, SnapshotPacer, TokenBucket
from elasticsan_snapshotter.domain.errors import Throttled

pytestmark = pytest.mark.unit

VOLUME = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg/volumes/v1"


class Clock:
    """Time that moves only when slept through or advanced."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Debt accumulates: the 4th waits 0.5 s, the 5th 1 s, in arrival order.
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)


def test_bucket_refills_but_never_beyond_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, burst=2, clock=clock)
    bucket.reserve()
    bucket.reserve()
    clock.now += 1.0
    assert bucket.available == pytest.approx(1.0)
    clock.now += 100.0
    assert bucket.available == pytest.approx(2.0)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate=0.0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1.0, burst=0)


def test_pacer_admits_seven_then_schedules_the_eighth_after_the_window() -> None:
    clock = Clock()
    pacer = SnapshotPacer(7, 300.0, clock=clock)
    delays = []
    for _ in range(7):
        delays.append(pacer.reserve(VOLUME))
        clock.now += 10.0
    assert delays == [0.0] * 7
    # Now = start + 70; the first of the seven was at start, so the eighth fits at start + 300.
    assert pacer.reserve(VOLUME) == pytest.approx(230.0)
    # The ninth waits for the second slot to leave the window.
    assert pacer.reserve(VOLUME) == pytest.approx(240.0)


def test_pacer_slots_are_per_volume_and_case_insensitive() -> None:
    clock = Clock()
    pacer = SnapshotPacer(1, 300.0, clock=clock)
    assert pacer.reserve(VOLUME) == 0.0
    assert pacer.reserve(VOLUME.upper()) == pytest.approx(300.0)
    assert pacer.reserve(VOLUME.replace("v1", "v2")) == 0.0


def test_pacer_margin_and_forgetting_old_slots() -> None:
    clock = Clock()
    pacer = SnapshotPacer(2, 300.0, margin=1.0, clock=clock)
    pacer.reserve(VOLUME)
    pacer.reserve(VOLUME)
    assert pacer.delay(VOLUME) == pytest.approx(301.0)
    clock.now += 301.0
    assert pacer.delay(VOLUME) == 0.0
    assert pacer.reserve(VOLUME) == 0.0


def test_pacer_delay_does_not_take_a_slot() -> None:
    clock = Clock()
    pacer = SnapshotPacer(1, 60.0, clock=clock)
    assert pacer.delay(VOLUME) == 0.0
    assert pacer.delay(VOLUME) == 0.0
    assert pacer.reserve(VOLUME) == 0.0
    assert pacer.delay(VOLUME) == pytest.approx(60.0)


async def test_pacing_queues_snapshot_creates_instead_of_failing() -> None:
    clock = Clock()
    pacing = Pacing(
        PacingConfig(
            snapshots_per_volume=7, snapshot_window_seconds=300.0, snapshot_window_margin_seconds=0.0
        ),
        clock=clock,
        sleep=clock.sleep,
    )
    waits = [await pacing.before_snapshot(VOLUME) for _ in range(8)]
    assert waits[:7] == [0.0] * 7
    assert waits[7] == pytest.approx(300.0)
    assert clock.slept == [pytest.approx(300.0)]


async def test_pacing_refuses_waits_longer_than_its_queue_limit() -> None:
    clock = Clock()
    pacing = Pacing(
        PacingConfig(snapshots_per_volume=1, snapshot_window_seconds=300.0, max_snapshot_queue_seconds=60.0),
        clock=clock,
        sleep=clock.sleep,
    )
    await pacing.before_snapshot(VOLUME)
    with pytest.raises(Throttled) as caught:
        await pacing.before_snapshot(VOLUME)
    assert caught.value.retry_after == pytest.approx(301.0)
    # The refused request took no slot: after the window one create fits at once.
    clock.now += 301.0
    assert await pacing.before_snapshot(VOLUME) == 0.0


async def test_pacing_spends_the_write_budget() -> None:
    clock = Clock()
    pacing = Pacing(PacingConfig(write_rate_per_second=4.0, write_burst=2), clock=clock, sleep=clock.sleep)
    waits = [await pacing.before_write() for _ in range(4)]
    assert waits == [0.0, 0.0, pytest.approx(0.25), pytest.approx(0.25)]
    assert clock.now == pytest.approx(1000.5)


async def test_concurrency_cap_holds_calls_back() -> None:
    pacing = Pacing(PacingConfig(max_concurrency=2))
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def call() -> None:
        nonlocal running, peak
        async with pacing.slot():
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

    tasks = [asyncio.create_task(call()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert running == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"write_rate_per_second": 0.0},
        {"write_burst": 0},
        {"max_concurrency": 0},
        {"snapshots_per_volume": 0},
        {"snapshot_window_seconds": 0.0},
        {"snapshot_window_margin_seconds": -1.0},
    ],
)
def test_pacing_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|needs"):
        PacingConfig(**kwargs)  # type: ignore[arg-type]


async def test_the_processes_never_sleep_for_a_volumes_snapshot_pace() -> None:
    """A burst on one volume must not hold a reconcile worker (or a gRPC call) for minutes.

    The operator's and the CSI controller's Azure settings turn a full window into
    ``Throttled`` with the wait, which the reconciler turns into a requeue after it.
    """
    from elasticsan_snapshotter.settings import Settings
    from elasticsan_snapshotter.wiring import azure_config

    clock = Clock()
    config = azure_config(Settings(subscription_id="00000000-0000-0000-0000-000000000001")).pacing
    pacing = Pacing(config, clock=clock, sleep=clock.sleep)
    for _ in range(config.snapshots_per_volume):
        await pacing.before_snapshot(VOLUME)
    with pytest.raises(Throttled) as caught:
        await pacing.before_snapshot(VOLUME)
    assert caught.value.retry_after == pytest.approx(config.snapshot_window_seconds + 1.0)
    assert clock.slept == []
    clock.now += config.snapshot_window_seconds + 1.0
    await pacing.before_snapshot(VOLUME)  # the slot the requeue waited for
    assert clock.slept == []
