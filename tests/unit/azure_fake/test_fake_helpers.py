"""InMemoryAzure's test helpers: error injection, call counters, seeding and latency."""

from __future__ import annotations

import asyncio

import pytest

from elasticsan_snapshotter.azure.fake import PORT_OPERATIONS, InMemoryAzure, ManualClock
from elasticsan_snapshotter.domain.errors import Forbidden, InvalidRequest, NotFound, Throttled, Transient
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.domain.ports import AzurePort

pytestmark = pytest.mark.unit

SAN = ElasticSanId("sub", "rg", "san1")
GROUP = SAN.volume_group("vg1")
VOLUME = GROUP.volume("vol1")


@pytest.fixture
def azure() -> InMemoryAzure:
    fake = InMemoryAzure(clock=ManualClock())
    fake.add_elastic_san(SAN)
    fake.add_volume_group(GROUP)
    fake.add_volume(VOLUME, 10)
    return fake


def test_the_fake_is_an_azure_port(azure: InMemoryAzure) -> None:
    port: AzurePort = azure
    assert all(callable(getattr(port, name)) for name in PORT_OPERATIONS)


async def test_fail_next_raises_for_the_given_number_of_calls(azure: InMemoryAzure) -> None:
    azure.fail_next("create_snapshot", Throttled("slow down", retry_after=7), times=2)
    for _ in range(2):
        with pytest.raises(Throttled) as caught:
            await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
        assert caught.value.retry_after == 7
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert azure.call_count("create_snapshot") == 3
    assert len(await azure.list_snapshots(GROUP)) == 1


async def test_failed_answers_are_absorbed_by_the_retries_of_each_call(azure: InMemoryAzure) -> None:
    azure.fail_answers("create_snapshot", Throttled("429", retry_after=1), answers=6, retries=2)
    for _ in range(2):  # each call meets three failed answers: all of its attempts
        with pytest.raises(Throttled):
            await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert azure.failed_answers["create_snapshot"] == 6
    assert await azure.list_snapshots(GROUP) == []
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert azure.failed_answers["create_snapshot"] == 6


async def test_fewer_failed_answers_than_attempts_never_reach_the_caller(azure: InMemoryAzure) -> None:
    azure.fail_answers("get_volume", Transient("503"), answers=2, retries=3)
    assert (await azure.get_volume(VOLUME)).id == VOLUME
    assert azure.failed_answers["get_volume"] == 2
    assert (await azure.get_volume(VOLUME)).id == VOLUME
    assert azure.failed_answers["get_volume"] == 2
    with pytest.raises(ValueError, match="answers must be at least 1"):
        azure.fail_answers("get_volume", Transient("503"), answers=0, retries=3)


async def test_injected_errors_are_fresh_each_time(azure: InMemoryAzure) -> None:
    original = Transient("flaky")
    azure.fail_next("get_volume", original, times=2)
    raised = []
    for _ in range(2):
        with pytest.raises(Transient) as caught:
            await azure.get_volume(VOLUME)
        raised.append(caught.value)
    assert raised[0] is not raised[1]
    assert raised[0] is not original


async def test_faults_only_hit_their_operation(azure: InMemoryAzure) -> None:
    azure.fail_next("delete_snapshot", Forbidden("no role"))
    assert (await azure.get_volume(VOLUME)).id == VOLUME
    with pytest.raises(Forbidden):
        await azure.delete_snapshot(GROUP.snapshot("any"))


async def test_faults_queue_in_order(azure: InMemoryAzure) -> None:
    azure.fail_next("get_volume", Transient("first"))
    azure.fail_next("get_volume", Forbidden("second"))
    with pytest.raises(Transient):
        await azure.get_volume(VOLUME)
    with pytest.raises(Forbidden):
        await azure.get_volume(VOLUME)
    await azure.get_volume(VOLUME)


async def test_always_failing_until_cleared(azure: InMemoryAzure) -> None:
    azure.fail_next("list_volumes", Transient("down"), times=None)
    for _ in range(5):
        with pytest.raises(Transient):
            await azure.list_volumes(GROUP)
    azure.clear_faults()
    assert len(await azure.list_volumes(GROUP)) == 1


async def test_after_effect_faults_act_then_raise(azure: InMemoryAzure) -> None:
    azure.fail_next("create_snapshot", Transient("response lost"), after_effect=True)
    with pytest.raises(Transient):
        await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    # The snapshot exists; a retry adopts it instead of making a second one.
    assert (await azure.get_snapshot(GROUP.snapshot("s1"))).source_volume == VOLUME
    await azure.create_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert len(await azure.list_snapshots(GROUP)) == 1


def test_fail_next_refuses_unknown_operations_and_counts(azure: InMemoryAzure) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        azure.fail_next("create_snapshots", Transient("x"))
    with pytest.raises(ValueError, match="unknown operation"):
        azure.fail_next("add_volume", Transient("x"))
    with pytest.raises(ValueError, match="at least 1"):
        azure.fail_next("get_volume", Transient("x"), times=0)


async def test_calls_are_counted_per_operation_including_failures(azure: InMemoryAzure) -> None:
    await azure.get_volume(VOLUME)
    with pytest.raises(NotFound):
        await azure.get_volume(GROUP.volume("missing"))
    await azure.list_volumes(GROUP)
    assert azure.calls == {"get_volume": 2, "list_volumes": 1}
    azure.reset_calls()
    assert azure.call_count("get_volume") == 0


def test_seeding_does_not_count_as_calls(azure: InMemoryAzure) -> None:
    azure.add_volume(GROUP.volume("vol2"), 1)
    azure.add_snapshot(GROUP.snapshot("s1"), VOLUME)
    assert sum(azure.calls.values()) == 0


def test_seeding_validates_names_and_parents() -> None:
    azure = InMemoryAzure()
    with pytest.raises(InvalidRequest):
        azure.add_elastic_san(ElasticSanId("sub", "rg", "x"))  # too short for a SAN name
    with pytest.raises(NotFound):
        azure.add_volume_group(GROUP)
    azure.add_elastic_san(SAN)
    with pytest.raises(NotFound):
        azure.add_volume(VOLUME, 1)
    with pytest.raises(InvalidRequest):
        azure.add_elastic_san(SAN, base_size_tib=0)


async def test_latency_lets_concurrent_calls_overlap() -> None:
    azure = InMemoryAzure(latency=0.01)
    azure.add_elastic_san(SAN)
    azure.add_volume_group(GROUP)
    azure.add_volume(VOLUME, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(azure.get_volume(VOLUME) for _ in range(20)))
    assert loop.time() - started < 0.15  # twenty calls of 10 ms each, overlapping


async def test_close_is_recorded(azure: InMemoryAzure) -> None:
    await azure.close()
    assert azure.closed
