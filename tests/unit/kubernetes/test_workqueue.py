"""The keyed work queue: one reconcile per key at a time, re-runs, backoff and requeues."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from elasticsan_snapshotter.kubernetes.workqueue import Requeue, WorkQueue


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5.0):
        # Polls state the queue's workers change; there is no event to wait on from outside.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class Runs:
    """A reconcile that only counts its runs."""

    def __init__(self) -> None:
        self.count = 0

    async def reconcile(self, key: str) -> None:
        self.count += 1


async def test_a_key_added_while_processing_runs_again_but_never_concurrently() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs.append(key)
        await release.wait()
        running.discard(key)

    queue = WorkQueue("t", reconcile, workers=4)
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.01)
    queue.add("a")  # while the first run is busy
    queue.add("a")  # collapses into the same re-run
    await asyncio.sleep(0.01)
    assert runs == ["a"]
    release.set()
    await until(lambda: len(runs) == 2 and not running)
    await asyncio.sleep(0.05)  # and no third run follows
    await queue.stop()
    assert runs == ["a", "a"]
    assert overlaps == []


async def test_requeue_after_and_backoff_doubling_up_to_the_cap() -> None:
    queue = WorkQueue("t", lambda key: asyncio.sleep(0), base_delay=1.0, max_delay=5.0)
    assert [queue.backoff("k") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    queue.forget("k")
    assert queue.backoff("k") == 1.0

    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: str) -> Requeue | None:
        seen.append(loop.time())
        return Requeue(0.05) if len(seen) < 3 else None

    queue = WorkQueue("t", reconcile)
    queue.start()
    queue.add("x")
    await until(lambda: len(seen) == 3)
    await queue.stop()
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(seen))


async def test_an_unexpected_exception_is_retried_with_backoff() -> None:
    calls = 0

    async def reconcile(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    queue = WorkQueue("t", reconcile, base_delay=0.05)
    queue.start()
    queue.add("x")
    await until(lambda: calls == 2)
    await queue.stop()


async def test_an_earlier_wake_up_wins() -> None:
    runs = Runs()
    queue = WorkQueue("t", runs.reconcile)
    queue.start()
    queue.add_after("x", 10.0)
    queue.add_after("x", 0.02)
    assert queue.pending == 1
    await until(lambda: runs.count == 1)
    await queue.stop()
    assert queue.pending == 0


async def test_backoff_grows_per_failure_and_a_success_resets_it() -> None:
    outcomes = [Requeue(), Requeue(), None, Requeue()]
    delays: list[float] = []

    async def reconcile(key: str) -> Requeue | None:
        return outcomes.pop(0) if outcomes else None

    queue = WorkQueue("t", reconcile, base_delay=0.01, max_delay=1.0)
    original = queue.add_after

    def record(key: str, delay: float) -> None:
        delays.append(delay)
        original(key, delay)

    queue.add_after = record  # type: ignore[method-assign]
    queue.start()
    queue.add("x")
    await until(lambda: len(delays) == 2 and queue.pending == 0)
    queue.add("x")  # after the success: the next failure starts from the base delay again
    await until(lambda: len(delays) == 3 and queue.pending == 0)
    await queue.stop()
    assert delays == [0.01, 0.02, 0.01]


async def test_keys_run_in_parallel_up_to_the_worker_count() -> None:
    running: set[str] = set()
    most = 0
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal most
        running.add(key)
        most = max(most, len(running))
        await release.wait()
        running.discard(key)

    queue = WorkQueue("t", reconcile, workers=2)
    queue.start()
    for key in "abc":
        queue.add(key)
    await until(lambda: len(running) == 2)
    await asyncio.sleep(0.02)
    assert most == 2
    assert queue.pending == 3  # two running, one waiting
    release.set()
    await until(lambda: queue.pending == 0)
    await queue.stop()
    assert most == 2


async def test_an_add_runs_now_instead_of_at_the_scheduled_time() -> None:
    runs = Runs()
    queue = WorkQueue("t", runs.reconcile)
    queue.start()
    queue.add_after("x", 30.0)
    queue.add("x")  # a watch event arrived: no need to wait for the timer
    await until(lambda: runs.count == 1)
    await asyncio.sleep(0.02)
    assert queue.pending == 0
    await queue.stop()


async def test_forget_and_stop_drop_scheduled_wake_ups() -> None:
    runs = Runs()
    queue = WorkQueue("t", runs.reconcile)
    queue.start()
    queue.add_after("gone", 0.02)
    queue.forget("gone")
    queue.add_after("later", 0.02)
    assert queue.pending == 1
    await queue.stop()
    assert queue.pending == 0
    await asyncio.sleep(0.05)
    assert runs.count == 0
