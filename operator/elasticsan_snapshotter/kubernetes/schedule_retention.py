"""Retention of a schedule's VolumeSnapshots, per claim, and the per-claim summary it yields."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import retention
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes import schedule_status as sstatus
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import WARNING
from elasticsan_snapshotter.kubernetes.resources import VOLUME_SNAPSHOT
from elasticsan_snapshotter.kubernetes.schedule_objects import copies_by_claim, holders, owner_key
from elasticsan_snapshotter.kubernetes.stores import Store

if TYPE_CHECKING:
    from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler

logger = logging.getLogger(__name__)


class ScheduledRetention:
    resource = VOLUME_SNAPSHOT

    def __init__(
        self, reconciler: ScheduleReconciler, body: Body, spec: sspec.ScheduleSpec, out: sstatus.Outcome
    ) -> None:
        self.rec = reconciler
        self.body = body
        self.spec = spec
        self.out = out

    async def run(self) -> None:
        meta = self.body["metadata"]
        namespace = meta["namespace"]
        now = self.rec.clock()
        held = holders(namespace, self.rec.claims, self.rec.exports)
        for claim, copies in copies_by_claim(self.rec.snapshots, meta["uid"], held).items():
            await self._observe(copies)
            plan = retention.plan([c for c, _ in copies], self.spec.policy, now=now, zone=self.spec.zone)
            self.out.blocked.extend(plan.blocked)
            kept = []
            for copy, vs in copies:
                if copy.name in plan.reasons:
                    await self._delete(vs, plan.reasons[copy.name], now)
                else:
                    kept.append((copy, vs))
            self._summarise(claim, kept)

    @property
    def store(self) -> Store:
        return self.rec.snapshots

    def _summarise(self, claim: str, copies: list[tuple[retention.Copy, Body]]) -> None:
        summary = self.out.target(claim)
        summary.azure_snapshots = self.rec.azure_count(self.body["metadata"]["namespace"], claim)
        for copy, _ in copies:
            summary.ready += copy.state == retention.READY
            summary.failed += copy.state == retention.FAILED
            summary.in_progress += copy.state == retention.IN_PROGRESS
            self.out.running = self.out.running or copy.state == retention.IN_PROGRESS
            if copy.state == retention.READY and (
                summary.newest_ready_time is None or copy.time > summary.newest_ready_time
            ):
                summary.newest_ready, summary.newest_ready_time = copy.name, copy.time
                self.out.last_success = max(self.out.last_success or copy.time, copy.time)
        finished = [(c, vs) for c, vs in copies if c.state in (retention.READY, retention.FAILED)]
        if finished:
            newest, vs = max(finished, key=lambda item: item[0].time)
            summary.last_failed = newest.state == retention.FAILED
            summary.failure = str(((vs.get("status") or {}).get("error") or {}).get("message") or "")

    async def _delete(self, vs: Body, why: str, now: datetime) -> None:
        meta = vs["metadata"]
        await self.rec.api.delete(self.resource, meta["name"], meta["namespace"], uid=meta.get("uid"))
        # Going: never counted or deleted again, whatever the watch says first.
        self.store.apply("MODIFIED", {**vs, "metadata": {**meta, "deletionTimestamp": sstatus.stamp(now)}})
        metrics.RETENTION_DELETIONS.labels(self.resource.kind).inc()
        logger.info("schedule %s: deleted %s %s (%s)", owner_key(vs), self.resource.kind, meta["name"], why)

    async def _observe(self, copies: list[tuple[retention.Copy, Body]]) -> None:
        """Metrics and an Event once per snapshot outcome."""
        for copy, vs in copies:
            if copy.state == retention.IN_PROGRESS or not self.rec.first_outcome(vs):
                continue
            metrics.SCHEDULE_RUNS.labels("Succeeded" if copy.state == retention.READY else "Failed").inc()
            if copy.state == retention.READY:
                metrics.SCHEDULE_TICK_TO_READY.observe(
                    max(0.0, (self.rec.clock() - copy.time).total_seconds())
                )
            else:
                error = ((vs.get("status") or {}).get("error") or {}).get("message") or "no message"
                await self.rec.recorder.record(
                    self.body, WARNING, "RunFailed", f"{self.resource.kind} {copy.name} failed: {error}"
                )


__all__ = ["ScheduledRetention"]
