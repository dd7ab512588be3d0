"""One policy turns every reconciler's errors into requeue delay, Event, status and metric."""

from __future__ import annotations

import asyncio

import pytest
from fake_kube import FakeKube, Request
from harness import (
    GROUP,
    NAMESPACE,
    Operator,
    dynamic_content,
    export,
    seeded_azure,
    volume_snapshot,
)

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.errors import Forbidden, Throttled
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.resources import SNAPSHOT_EXPORT, VOLUME_SNAPSHOT_CONTENT
from elasticsan_snapshotter.kubernetes.workqueue import Requeue, WorkQueue

VOLUME = GROUP.volume("vol1")


def _errors(resource: str, reason: str, final: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "elasticsan_snapshotter_reconcile_errors_total",
        {"resource": resource, "reason": reason, "final": final},
    )
    return value or 0.0


async def test_a_retryable_error_backs_off_no_sooner_than_its_retry_after_with_one_event() -> None:
    kube = FakeKube()
    body = kube.seed(VOLUME_SNAPSHOT_CONTENT, {"metadata": {"name": "c"}, "spec": {}})
    before = _errors("VolumeSnapshotContent", "Throttled", "false")
    for _ in range(3):
        outcome = await retry.handle(
            RECORDER(kube),
            body,
            Throttled("slow down", retry_after=40.0),
            resource="VolumeSnapshotContent",
        )
        assert outcome == Requeue(after=None, minimum=40.0)
    assert len(kube.events_about("c", "Throttled")) == 1
    assert _errors("VolumeSnapshotContent", "Throttled", "false") == before + 3


_RECORDERS: dict[int, EventRecorder] = {}


def RECORDER(kube: FakeKube) -> EventRecorder:
    return _RECORDERS.setdefault(id(kube), EventRecorder(kube))


async def test_a_final_error_writes_status_once_and_is_rechecked_rarely() -> None:
    kube = FakeKube()
    body = kube.seed(VOLUME_SNAPSHOT_CONTENT, {"metadata": {"name": "c"}, "spec": {}})
    written: list[str] = []

    async def write_final(error: object) -> None:
        written.append(str(error))

    outcome = await retry.handle(
        RECORDER(kube), body, Forbidden("no role"), resource="VolumeSnapshotContent", write_final=write_final
    )
    assert outcome == Requeue(retry.FINAL_RECHECK)
    assert written == ["no role"]
    assert kube.events_about("c", "Forbidden")[0]["type"] == "Warning"


async def test_a_conflict_on_an_export_backs_off_quietly_instead_of_spinning() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    dynamic_content(kube, vs, VOLUME)
    operator = Operator(kube, azure)
    await operator.settle()
    export(kube, volumeSnapshotName="snap")

    def status_conflict(request: Request) -> tuple[int, str] | None:
        if request.plural == SNAPSHOT_EXPORT.plural and request.subresource == "status":
            return 409, "Conflict"
        return None

    kube.fail_when = status_conflict
    operator.deliver_all()
    outcome = await operator.reconcile("exports", f"{NAMESPACE}/copy")
    assert outcome == Requeue(after=None, minimum=0.0)  # the key's exponential backoff
    assert kube.events_about("copy") == []


async def test_the_work_queue_waits_at_least_the_minimum_a_requeue_asks_for() -> None:
    ran = asyncio.Event()

    async def reconcile(key: str) -> Requeue:
        ran.set()
        return Requeue(minimum=50.0)

    queue = WorkQueue("t", reconcile, workers=1)
    queue.start()
    try:
        queue.add("a")
        async with asyncio.timeout(5):
            await ran.wait()
        async with asyncio.timeout(5):
            while "a" not in queue._timers:  # noqa: ASYNC110  (the worker sets the timer after the reconcile)
                await asyncio.sleep(0.01)
        delay = queue._timers["a"].when() - asyncio.get_running_loop().time()
        assert 45.0 < delay <= 50.0
    finally:
        await queue.stop()


@pytest.mark.parametrize(
    ("elapsed", "percent", "expected"),
    [
        (600.0, 10.0, 120.0),  # hours to go: capped
        (60.0, 50.0, 30.0),  # halfway to the expected end
        (30.0, 99.0, 1.0),  # nearly done: as often as allowed
        (10.0, 0.0, 5.0),  # not moving yet: backs off with age
        (0.8, 0.5, 1.0),  # the first percent says little: no wait longer than the copy's age
    ],
)
def test_copies_are_polled_by_their_progress(elapsed: float, percent: float, expected: float) -> None:
    assert decisions.next_progress_poll(elapsed, percent, minimum=1.0, maximum=120.0) == pytest.approx(
        expected
    )


async def test_a_long_copy_is_not_polled_every_second() -> None:
    kube, azure = FakeKube(), seeded_azure()
    azure.export_seconds = 3600.0
    vs = volume_snapshot(kube, "snap")
    dynamic_content(kube, vs, VOLUME)
    operator = Operator(kube, azure)
    await operator.settle()
    export(kube, volumeSnapshotName="snap")
    await operator.settle(rounds=2)
    kube.patch_status_direct(SNAPSHOT_EXPORT, "copy", {"startTime": "2000-01-01T00:00:00Z"}, NAMESPACE)
    azure.advance(600.0)
    operator.deliver_all()
    outcome = await operator.reconcile("exports", f"{NAMESPACE}/copy")
    assert outcome == Requeue(120.0)
