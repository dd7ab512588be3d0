#!/usr/bin/env python3
"""Scheduler overhead with many claims on one schedule, in process, on a simulated clock.

The real ``ScheduleReconciler`` runs against an in-memory stand-in for the API server
(``tests/kube_stand_in.py``) and the in-memory Azure fake; the clock advances to each wake-up
the reconciler asks for, as the work queue would, and every VolumeSnapshot becomes ready at
once (the snapshot-controller's part). It prints, for one tick of an hourly schedule:

- whether every snapshot was created within the jitter window after its tick (strictly),
  and how far each was from its own due time (tick plus its jitter): batched runs may be
  early by up to a second, never late;
- the operator CPU spent on that run (process time of all reconciles), in total and per claim;
- the most creates in any second, and the longest wait the Azure write budget
  (``ESS_WRITE_RATE``/``ESS_WRITE_BURST``, token bucket) would impose: 0 means the run never
  bursts above the configured write rate.

    .venv/bin/python hack/bench_schedules.py [--claims 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from elasticsan_snapshotter.azure.fake import InMemoryAzure  # noqa: E402
from elasticsan_snapshotter.azure.pacing import TokenBucket  # noqa: E402
from elasticsan_snapshotter.domain.mapping import SanIndex  # noqa: E402
from elasticsan_snapshotter.domain.schedule import jitter, jitter_window  # noqa: E402
from elasticsan_snapshotter.kubernetes.api import KubeApi  # noqa: E402
from elasticsan_snapshotter.kubernetes.events import EventRecorder  # noqa: E402
from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler  # noqa: E402
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store  # noqa: E402
from elasticsan_snapshotter.settings import Settings  # noqa: E402
from kube_stand_in import FakeApi  # noqa: E402

TICK = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = jitter_window(timedelta(hours=1))
"""The default jitter window of an hourly schedule (a tenth of the hour, at most 5 minutes)."""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def run(claims: int) -> dict[str, Any]:
    api = FakeApi()
    kube = cast(KubeApi, api)
    clock = Clock(TICK - timedelta(seconds=1))
    azure = InMemoryAzure()
    schedule = {
        "apiVersion": "elasticsan.snapshotter.dev/v1alpha1",
        "kind": "ElasticSanSnapshotSchedule",
        "metadata": {
            "name": "hourly",
            "namespace": "bench",
            "uid": "5c4e0d2a-0000-4000-8000-00000000b001",
            "generation": 1,
            "creationTimestamp": "2026-06-01T11:00:30Z",
        },
        "spec": {
            "schedule": "@hourly",
            "startingDeadlineSeconds": 600,
            "source": {"selector": {"matchLabels": {"backup": "hourly"}}},
            "retention": {"keepLast": 24},
        },
    }
    api.objects[("elasticsansnapshotschedules", "bench", "hourly")] = schedule
    schedules = Store()
    schedules.apply("ADDED", schedule)
    settings = Settings()
    rec = ScheduleReconciler(
        driver_name=settings.driver_name,
        subscription="bench",
        api=kube,
        azure=azure,
        recorder=EventRecorder(kube),
        schedules=schedules,
        exports=Store(),
        volumes=PersistentVolumes(kube),
        index=SanIndex(azure, []),
        minimum_interval=timedelta(seconds=settings.schedule_minimum_interval),
        clock=clock,
    )
    for i in range(claims):
        rec.claim_event(
            "ADDED",
            {
                "metadata": {
                    "name": f"data-{i:04d}",
                    "namespace": "bench",
                    "uid": f"c{i}",
                    "labels": {"backup": "hourly"},
                },
                "spec": {"volumeName": f"pv-{i}"},
                "status": {"phase": "Bound"},
            },
        )
    created_at: dict[str, datetime] = {}
    late_after_due: list[float] = []
    cpu = 0.0
    reconciles = 0
    end = TICK + WINDOW + timedelta(seconds=5)
    while clock.now < end:
        start = time.process_time()
        outcome = await rec.reconcile("bench/hourly")
        cpu += time.process_time() - start
        reconciles += 1
        for vs in api.snapshots():
            name = vs["metadata"]["name"]
            if name not in created_at:
                created_at[name] = clock.now
                claim = vs["metadata"]["annotations"]["elasticsan.snapshotter.dev/claim"]
                due = TICK + jitter(schedule["metadata"]["uid"], claim, WINDOW)
                late_after_due.append((clock.now - due).total_seconds())
                vs["status"] = {"readyToUse": True}
                rec.snapshot_event("MODIFIED", vs)
        after = outcome.after if outcome is not None and outcome.after is not None else 1.0
        clock.now += timedelta(seconds=after)
    offsets = [(when - TICK).total_seconds() for when in created_at.values()]
    per_second = Counter(int(o) for o in offsets)
    bucket_clock = [0.0]
    bucket = TokenBucket(settings.write_rate, settings.write_burst, clock=lambda: bucket_clock[0])
    longest_wait = 0.0
    for offset in sorted(offsets):
        bucket_clock[0] = offset
        longest_wait = max(longest_wait, bucket.reserve())
    return {
        "claims": claims,
        "snapshots_created": len(created_at),
        "jitter_window_s": WINDOW.total_seconds(),
        "all_within_jitter_window": bool(offsets) and all(0 <= o < WINDOW.total_seconds() for o in offsets),
        "latest_create_after_tick_s": round(max(offsets, default=0.0), 3),
        "longest_delay_after_due_s": round(max(late_after_due, default=0.0), 3),
        "earliest_before_due_s": round(-min(late_after_due, default=0.0), 3),
        "reconciles": reconciles,
        "cpu_seconds_for_the_run": round(cpu, 3),
        "cpu_ms_per_claim": round(cpu * 1000 / max(claims, 1), 3),
        "most_creates_in_one_second": max(per_second.values(), default=0),
        "write_rate_per_second": settings.write_rate,
        "write_burst": settings.write_burst,
        "longest_write_budget_wait_s": round(longest_wait, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.claims))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0 if result["all_within_jitter_window"] and result["snapshots_created"] == args.claims else 1


if __name__ == "__main__":
    sys.exit(main())
