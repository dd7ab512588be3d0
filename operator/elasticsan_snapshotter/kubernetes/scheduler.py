"""ElasticSanSnapshotSchedule: ordinary VolumeSnapshots on a schedule, trimmed by retention.

Each reconcile of a schedule:

* refuses, in status and without creating anything, a spec that cannot run
  (bad cron, unknown zone, an interval under the minimum, mode Group
  with claim names, or limits it can never fit);
* for the newest tick not yet handled, creates per claim, at the tick plus the
  claim's stable jitter, a VolumeSnapshot whose name is fixed by (schedule,
  claim, tick): a restart or a retry finds it instead of making a second one;
  a claim whose run would start later than ``startingDeadlineSeconds`` is
  skipped and recorded, and older ticks missed while the operator was down
  are recorded, never run;
* in mode Group (``schedule_groups``), creates instead one VolumeGroupSnapshot per
  tick over the selector, named by (schedule, tick), and applies retention to the
  schedule's groups, holding a group while one of its members is in use;
* applies retention per claim to the snapshots labelled with this schedule's
  UID (and nothing else), keeping what is in use;
* runs scheduled exports (``schedule_exports``; in mode Group of each member of
  the chosen group) and writes the status.

Pacing against Azure's 7 snapshots per volume per 5 minutes is the Azure
adapter's: the snapshotter's create waits for the volume's slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import limits
from elasticsan_snapshotter.domain.errors import AlreadyExists, InvalidRequest, SnapshotterError
from elasticsan_snapshotter.domain.mapping import SanIndex, volume_of
from elasticsan_snapshotter.domain.schedule import (
    RUN,
    SKIP,
    WAIT,
    jitter_window,
    judge,
    shortest_gap,
)
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes import schedule_status as sstatus
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import WARNING
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    SNAPSHOT_SCHEDULE,
    VOLUME_SNAPSHOT,
)
from elasticsan_snapshotter.kubernetes.schedule_deletion import finalize, sync_finalizer
from elasticsan_snapshotter.kubernetes.schedule_exports import ScheduledExports
from elasticsan_snapshotter.kubernetes.schedule_groups import GroupRetention, check, group_tick
from elasticsan_snapshotter.kubernetes.schedule_limits import demand_of, pressure, spec_key
from elasticsan_snapshotter.kubernetes.schedule_objects import (
    RUN_AHEAD,
    group_of,
    is_ours,
    owner_key,
    planned,
    slim_claim,
    slim_snapshot,
    snapshot_body,
)
from elasticsan_snapshotter.kubernetes.schedule_retention import ScheduledRetention
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

logger = logging.getLogger(__name__)

MAX_WAIT = 300.0
"""Look at every schedule at least this often, whatever its next tick."""
MISSED_LIMIT = 10_000
MAX_REMEMBERED = 10_000
FULL_PASS_EVERY = timedelta(seconds=10)
"""While claims of a tick still wait for their jitter, retention and status run at most this often."""
COALESCE = RUN_AHEAD.total_seconds()
"""Shortest wait between reconciles of one schedule: claims due within it run together (early)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True, eq=False)
class ScheduleReconciler(Reconciler):
    schedules: Store
    exports: Store
    volumes: PersistentVolumes
    index: SanIndex
    minimum_interval: timedelta
    volume_limits: limits.VolumeLimits = field(default_factory=limits.VolumeLimits)
    clock: Callable[[], datetime] = utc_now
    claims: Store = field(init=False, default_factory=lambda: Store(slim_claim))
    snapshots: Store = field(init=False, default_factory=lambda: Store(slim_snapshot))
    groups: Store = field(init=False, default_factory=lambda: Store(slim_snapshot))
    members: Store = field(init=False, default_factory=lambda: Store(slim_snapshot))
    """Member VolumeSnapshots of VolumeGroupSnapshots: what holds a group, and what mode Group exports."""
    _counted: set[str] = field(init=False, default_factory=set)
    _azure_counts: dict[str, int] = field(init=False, default_factory=dict)
    _skips_counted: dict[tuple[str, str, str], None] = field(init=False, default_factory=dict)
    _windows: dict[str, timedelta] = field(init=False, default_factory=dict)
    _plans: dict[str, tuple[tuple[datetime, timedelta], dict[str, tuple[str, datetime]]]] = field(
        init=False, default_factory=dict
    )
    _full_pass: dict[str, datetime] = field(init=False, default_factory=dict)

    # -- watch events, fed by the handlers -------------------------------------------------

    def snapshot_event(self, event_type: str | None, body: Body) -> str | None:
        """Keep our own VolumeSnapshots and group members; the key of the schedule to look at again."""
        if not is_ours(body):
            group = group_of(body)
            if group is None:
                return None
            self.members.apply(event_type, body)
            found = self.groups.get(f"{body['metadata'].get('namespace')}/{group}")
            return owner_key(found) if found is not None else None
        self.snapshots.apply(event_type, body)
        if event_type == "DELETED":
            self._counted.discard(str(body["metadata"].get("uid")))
        return owner_key(body)

    def group_event(self, event_type: str | None, body: Body) -> str | None:
        """Keep our own VolumeGroupSnapshots; the key of the schedule to look at again."""
        if not is_ours(body):
            return None
        self.groups.apply(event_type, body)
        if event_type == "DELETED":
            self._counted.discard(str(body["metadata"].get("uid")))
        return owner_key(body)

    def claim_event(self, event_type: str | None, body: Body) -> list[str]:
        """Keep every claim; the schedules of its namespace may select it."""
        self.claims.apply(event_type, body)
        namespace = (body.get("metadata") or {}).get("namespace")
        return [
            f"{namespace}/{s['metadata']['name']}"
            for s in self.schedules
            if s["metadata"].get("namespace") == namespace
        ]

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Outcome:
        body = self.schedules.get(key)
        if body is None:
            return None
        if body["metadata"].get("deletionTimestamp"):
            return await finalize(self, body)
        now = self.clock()
        try:
            spec = sspec.parse(body, minimum=self.minimum_interval)
            check(spec)
        except InvalidRequest as exc:
            return await self._refuse(body, "InvalidSpec", str(exc))
        try:
            body = await sync_finalizer(self, body, spec)
            demand = demand_of(body, spec, self.volume_limits, now)
            why = limits.never_fits(demand, self.volume_limits)
            if why:
                return await self._refuse(body, "LimitExceeded", f"this schedule can never fit: {why}")
            return await self._run(body, spec, demand, now)
        except SnapshotterError as exc:
            await self.recorder.error(body, exc)
            if exc.retryable:
                return Requeue(exc.retry_after) if exc.retry_after else Requeue()
            return Requeue(MAX_WAIT)

    async def _run(
        self, body: Body, spec: sspec.ScheduleSpec, demand: limits.Demand, now: datetime
    ) -> Outcome:
        meta = body["metadata"]
        namespace = meta["namespace"]
        status = body.get("status") or {}
        targets = sspec.targets(spec, namespace, list(self.claims))
        out = sstatus.Outcome(suspended=spec.suspend, schedule_uid=str(meta["uid"]))
        last = sstatus.parse_stamp(status.get("lastScheduleTime")) or sstatus.parse_stamp(
            meta.get("creationTimestamp")
        )
        last = last or now
        out.last_schedule = sstatus.parse_stamp(status.get("lastScheduleTime"))
        wake: list[datetime] = []
        tick = spec.schedule.latest_at_or_before(now, spec.zone)
        pending = False
        if tick is not None and tick > last:
            if spec.suspend:
                out.last_schedule = tick
            else:
                window = self._jitter_window(body, spec, tick)
                pending = await self._tick(body, spec, targets, tick, last, now, window, out, wake)
                if not pending:
                    out.last_schedule = tick
        out.next_schedule = spec.schedule.next_after(max(now, out.last_schedule or now), spec.zone)
        wake.append(out.next_schedule)
        previous = self._full_pass.get(str(meta["uid"]))
        if pending and previous is not None and now - previous < FULL_PASS_EVERY and not out.skipped:
            # Mid-window, between claims' due times: retention and status can wait a few seconds.
            return Requeue(min(max(min((w - now).total_seconds() for w in wake), COALESCE), MAX_WAIT))
        self._full_pass[str(meta["uid"])] = now
        if spec.mode == sspec.GROUP:
            await GroupRetention(self, body, spec, out, targets).run()
        else:
            await ScheduledRetention(self, body, spec, out).run()
        out.pressure = pressure(
            body,
            demand,
            targets,
            self.schedules,
            self.snapshots,
            self.groups,
            self.claims,
            self._azure_counts,
            minimum=self.minimum_interval,
            volume_limits=self.volume_limits,
            now=now,
        )
        await ScheduledExports(self, body, spec, out).run(now, wake)
        await self._write(body, targets, out, now)
        if out.skipped is not None:
            await self.recorder.record(body, WARNING, out.skipped[1], out.skipped[2])
        if out.pressure:
            await self.recorder.record(body, WARNING, "LimitPressure", out.pressure)
        after = min((w - now).total_seconds() for w in wake)
        return Requeue(min(max(after, COALESCE), MAX_WAIT))

    async def _tick(
        self,
        body: Body,
        spec: sspec.ScheduleSpec,
        targets: list[str],
        tick: datetime,
        last: datetime,
        now: datetime,
        window: timedelta,
        out: sstatus.Outcome,
        wake: list[datetime],
    ) -> bool:
        """Act on the newest tick for every target; True while some target's run is still ahead."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        missed = len(spec.schedule.ticks_between(last, tick, spec.zone, limit=MISSED_LIMIT)) - 1
        if missed > 0:
            self.skip(
                out,
                tick,
                "MissedTicks",
                f"{missed} earlier tick(s) passed without a run (the operator was down or behind); only the newest is run",
            )
        pending, late, unbound = False, [], []
        plan = self._plan(body, tick, window)
        if spec.mode == sspec.GROUP:
            return await group_tick(self, body, spec, targets, tick, now, plan, window, out, wake)
        for claim in targets:
            name, due = planned(plan, body, claim, tick, window)
            if self.snapshots.get(f"{namespace}/{name}") is not None:
                continue
            verdict = judge(due, now, spec.deadline, ahead=RUN_AHEAD)
            if verdict.action == WAIT:
                pending = True
                wake.append(verdict.due)
            elif verdict.action == SKIP:
                late.append((claim, verdict.reason))
            elif verdict.action == RUN:
                claim_body = self.claims.get(f"{namespace}/{claim}")
                if claim_body is None or (claim_body.get("status") or {}).get("phase") != "Bound":
                    unbound.append(claim)
                    continue
                await self._create(body, spec, claim, claim_body, tick, name)
                out.running = True
        if late:
            claims = ", ".join(c for c, _ in late[:5]) + (
                f" and {len(late) - 5} more" if len(late) > 5 else ""
            )
            self.skip(
                out, tick, "MissedStartingDeadline", f"run of {sstatus.stamp(tick)} for {claims} {late[0][1]}"
            )
        if unbound:
            self.skip(
                out,
                tick,
                "ClaimNotBound",
                f"run of {sstatus.stamp(tick)} skipped for claim(s) not Bound: {', '.join(unbound[:5])}",
            )
        return pending

    def _plan(self, body: Body, tick: datetime, window: timedelta) -> dict[str, tuple[str, datetime]]:
        """Per claim, the run's name and due time for this tick, computed once per tick."""
        uid = str(body["metadata"]["uid"])
        known = self._plans.get(uid)
        if known is None or known[0] != (tick, window):
            if len(self._plans) > MAX_REMEMBERED:
                self._plans.clear()
            known = self._plans[uid] = ((tick, window), {})
        return known[1]

    def _jitter_window(self, body: Body, spec: sspec.ScheduleSpec, tick: datetime) -> timedelta:
        key = spec_key(body)
        if key not in self._windows:
            if len(self._windows) > MAX_REMEMBERED:
                self._windows.clear()
            self._windows[key] = jitter_window(shortest_gap(spec.schedule, spec.zone, tick), spec.jitter)
        return self._windows[key]

    def skip(self, out: sstatus.Outcome, tick: datetime, reason: str, message: str) -> None:
        seen = (out.schedule_uid, sstatus.stamp(tick), reason)
        if seen not in self._skips_counted:
            self._skips_counted[seen] = None
            while len(self._skips_counted) > MAX_REMEMBERED:
                self._skips_counted.pop(next(iter(self._skips_counted)))
            metrics.SCHEDULE_SKIPPED.labels(reason).inc()
        out.skipped = (tick, reason, message)

    async def _create(
        self, body: Body, spec: sspec.ScheduleSpec, claim: str, claim_body: Body, tick: datetime, name: str
    ) -> None:
        namespace = body["metadata"]["namespace"]
        await self.count_azure(namespace, claim, claim_body)
        manifest = snapshot_body(body, spec, claim, tick, name)
        try:
            created = await self.api.create(VOLUME_SNAPSHOT, manifest, namespace)
        except AlreadyExists:
            return  # made before a restart or by a concurrent reconcile: the tick is covered
        self.snapshots.apply("ADDED", created)
        logger.info(
            "schedule %s/%s: created VolumeSnapshot %s for %s",
            namespace,
            body["metadata"]["name"],
            name,
            claim,
        )

    def azure_count(self, namespace: str, claim: str) -> int | None:
        return self._azure_counts.get(f"{namespace}/{claim}")

    def first_outcome(self, vs: Body) -> bool:
        """True the first time a snapshot's outcome is seen (metrics and Events count it once)."""
        uid = str(vs["metadata"].get("uid"))
        if uid in self._counted:
            return False
        self._counted.add(uid)
        return True

    async def count_azure(self, namespace: str, claim: str, claim_body: Body) -> None:
        """Elastic SAN snapshots of the claim's volume, looked up once per run (best effort)."""
        pv = self.volumes.get(str((claim_body.get("spec") or {}).get("volumeName") or ""))
        if pv is None:
            return
        try:
            volume = await volume_of(pv, index=self.index, default_subscription=self.subscription)
            found = await self.azure.list_snapshots(volume.volume_group, volume.name)
        except SnapshotterError as exc:
            logger.info("could not count the snapshots of claim %s/%s: %s", namespace, claim, exc)
            return
        self._azure_counts[f"{namespace}/{claim}"] = len(found)

    # -- status, refusal --------------------------------------------------------------

    async def _write(self, body: Body, targets: list[str], out: sstatus.Outcome, now: datetime) -> None:
        fields = out.fields(targets, self.volume_limits.max_snapshots)
        await self._patch_status(body, fields, out.wanted(targets), now)

    async def _patch_status(
        self, body: Body, fields: dict[str, Any], wanted: list[sstatus.Condition], now: datetime
    ) -> None:
        meta = body["metadata"]
        change = sstatus.patch(
            body.get("status") or {}, fields, wanted, generation=int(meta.get("generation") or 0), now=now
        )
        if not change:
            return
        updated = await self.api.patch(
            SNAPSHOT_SCHEDULE, meta["name"], {"status": change}, meta["namespace"], subresource="status"
        )
        if (updated.get("metadata") or {}).get("name"):
            self.schedules.apply("MODIFIED", updated)

    async def _refuse(self, body: Body, reason: str, message: str) -> Outcome:
        await self._patch_status(body, {}, sstatus.refused(reason, message), self.clock())
        await self.recorder.record(body, WARNING, reason, message)
        return None


__all__ = ["ScheduleReconciler", "utc_now"]
