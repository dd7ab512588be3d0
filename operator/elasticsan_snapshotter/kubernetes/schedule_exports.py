"""Scheduled exports: some runs' snapshots copied to managed-disk snapshots, with their own retention.

An export is an ordinary ElasticSanSnapshotExport named like its source
VolumeSnapshot (so one source is never exported twice), labelled with the
schedule's UID and made with ``deletionPolicy: Delete``: when retention deletes
the export object, the exporter deletes its managed-disk snapshot.

``everyNthRun: N`` exports a claim's newest ready snapshot when N ticks have
passed since the source of its newest export; ``schedule`` exports the newest
ready snapshot once per tick of its own schedule (waiting for a run taken at or before
that tick that is still being made, so an export tick that falls on a run gets that run). In mode Group the snapshots of a
claim are the members of the schedule's VolumeGroupSnapshots: each member of the
chosen group is exported, one export per claim, and trimmed per claim.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import retention
from elasticsan_snapshotter.domain.errors import AlreadyExists
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes import schedule_status as sstatus
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import SNAPSHOT_EXPORT
from elasticsan_snapshotter.kubernetes.schedule_groups import member_copies, members_by_group, our_groups
from elasticsan_snapshotter.kubernetes.schedule_objects import copies_by_claim, state_of

if TYPE_CHECKING:
    from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler

STATES = {"Succeeded": retention.READY, "Failed": retention.FAILED}


class ScheduledExports:
    def __init__(
        self,
        reconciler: ScheduleReconciler,
        body: Body,
        spec: sspec.ScheduleSpec | None,
        out: sstatus.Outcome | None,
    ) -> None:
        self.rec = reconciler
        self.body = body
        self.spec = spec
        self.out = out
        self.namespace = str(body["metadata"]["namespace"])
        self.uid = str(body["metadata"]["uid"])

    @classmethod
    def for_deletion(cls, reconciler: ScheduleReconciler, body: Body) -> ScheduledExports:
        return cls(reconciler, body, None, None)

    def ours(self) -> dict[str, list[Body]]:
        """This schedule's exports not being deleted, per claim."""
        out: dict[str, list[Body]] = {}
        for export in self.rec.exports:
            meta = export.get("metadata") or {}
            if (
                meta.get("namespace") != self.namespace
                or (meta.get("labels") or {}).get(sspec.LABEL_SCHEDULE_UID) != self.uid
                or meta.get("deletionTimestamp")
            ):
                continue
            claim = (meta.get("annotations") or {}).get(sspec.ANN_CLAIM)
            if claim:
                out.setdefault(str(claim), []).append(export)
        return out

    async def run(self, now: datetime, wake: list[datetime]) -> None:
        if self.spec is None or self.spec.export is None or self.out is None:
            return
        plan = self.spec.export
        exports = self.ours()
        due_tick = None
        if plan.schedule is not None:
            due_tick = plan.schedule.latest_at_or_before(now, self.spec.zone)
            wake.append(plan.schedule.next_after(now, self.spec.zone))
            created = sstatus.parse_stamp(self.body["metadata"].get("creationTimestamp"))
            if due_tick is not None and created is not None and due_tick < created:
                due_tick = None
        groups_made = None  # mode Group: the ticks of groups still being made (no members yet)
        if self.spec.mode == sspec.GROUP:
            groups_made = [
                when
                for group, when in our_groups(self.rec.groups, self.uid)
                if state_of(group) == retention.IN_PROGRESS
            ]
        for claim, copies in self._sources().items():
            ready = sorted((c for c, _ in copies if c.state == retention.READY), key=lambda c: c.time)
            if not ready:
                continue
            newest, existing = ready[-1], exports.get(claim, [])
            if any(_source(e) == newest.name for e in existing):
                continue
            making = (
                groups_made
                if groups_made is not None
                else [c.time for c, _ in copies if c.state == retention.IN_PROGRESS]
            )
            if due_tick is not None and any(newest.time < t <= due_tick for t in making):
                continue  # the run of the export's tick is still being made: export that one once ready
            if self._due(plan, existing, newest, due_tick):
                exports.setdefault(claim, []).append(await self._create(claim, newest, due_tick or now))
        for claim, items in exports.items():
            await self._trim(claim, items, now)

    def _sources(self) -> dict[str, list[tuple[retention.Copy, Body]]]:
        """Per claim, what may be exported: the schedule's snapshots, or in mode Group its groups' members."""
        assert self.spec is not None
        if self.spec.mode == sspec.GROUP:
            members = members_by_group(self.rec.members, self.namespace)
            return member_copies(self.rec.groups, self.uid, members)
        return copies_by_claim(self.rec.snapshots, self.uid, retention.Holders())

    def _due(
        self, plan: sspec.ExportPlan, existing: list[Body], newest: retention.Copy, due_tick: datetime | None
    ) -> bool:
        assert self.spec is not None
        if plan.every_nth_run is not None:
            times = [t for t in (_time(e, sspec.ANN_SCHEDULED_TIME) for e in existing) if t is not None]
            if not times:
                return True
            runs = self.spec.schedule.ticks_between(
                max(times), newest.time, self.spec.zone, limit=plan.every_nth_run + 1
            )
            return len(runs) >= plan.every_nth_run
        if due_tick is None:
            return False
        done = [t for t in (_time(e, sspec.ANN_EXPORT_TIME) for e in existing) if t is not None]
        return not done or max(done) < due_tick

    async def _create(self, claim: str, source: retention.Copy, export_time: datetime) -> Body:
        assert self.spec is not None
        assert self.spec.export is not None
        meta = self.body["metadata"]
        body: dict[str, Any] = {
            "apiVersion": SNAPSHOT_EXPORT.api_version,
            "kind": SNAPSHOT_EXPORT.kind,
            "metadata": {
                "name": source.name,
                "namespace": self.namespace,
                "labels": {**self.spec.labels, sspec.LABEL_SCHEDULE_UID: self.uid},
                "annotations": {
                    **self.spec.annotations,
                    sspec.ANN_SCHEDULE: meta["name"],
                    sspec.ANN_CLAIM: claim,
                    sspec.ANN_SCHEDULED_TIME: sstatus.stamp(source.time),
                    sspec.ANN_EXPORT_TIME: sstatus.stamp(export_time),
                },
            },
            "spec": {
                "source": {"volumeSnapshotName": source.name},
                "target": dict(self.spec.export.target),
                "deletionPolicy": "Delete",
            },
        }
        try:
            created = await self.rec.api.create(SNAPSHOT_EXPORT, body, self.namespace)
        except AlreadyExists:
            found = await self.rec.api.get(SNAPSHOT_EXPORT, source.name, self.namespace)
            if found is None:
                raise
            created = found
        self.rec.exports.apply("ADDED", created)
        return created

    async def _trim(self, claim: str, items: list[Body], now: datetime) -> None:
        assert self.spec is not None
        assert self.spec.export is not None
        assert self.out is not None
        copies = []
        for export in items:
            when = _time(export, sspec.ANN_SCHEDULED_TIME)
            if when is None:
                continue
            state = STATES.get(str((export.get("status") or {}).get("phase")), retention.IN_PROGRESS)
            copies.append(retention.Copy(str(export["metadata"]["name"]), when, state))
        plan = retention.plan(copies, self.spec.export.policy, now=now, zone=self.spec.zone)
        for name in plan.delete:
            await self.rec.api.delete(SNAPSHOT_EXPORT, name, self.namespace)
            metrics.RETENTION_DELETIONS.labels("ElasticSanSnapshotExport").inc()
        kept = [c for c in copies if c.name not in plan.delete]
        self.out.target(claim).exports = len(kept)
        succeeded = [c.time for c in kept if c.state == retention.READY]
        if succeeded:
            self.out.last_export = max(
                [*succeeded, *([self.out.last_export] if self.out.last_export else [])]
            )

    async def delete_all(self, selector: str) -> None:
        for export in await self.rec.api.list(SNAPSHOT_EXPORT, self.namespace, label_selector=selector):
            await self.rec.api.delete(SNAPSHOT_EXPORT, export["metadata"]["name"], self.namespace)
            metrics.RETENTION_DELETIONS.labels("ElasticSanSnapshotExport").inc()


def _source(export: Body) -> str | None:
    return ((export.get("spec") or {}).get("source") or {}).get("volumeSnapshotName")


def _time(export: Body, annotation: str) -> datetime | None:
    return sstatus.parse_stamp(((export.get("metadata") or {}).get("annotations") or {}).get(annotation))


__all__ = ["ScheduledExports"]
