"""``deletionPolicy`` of a schedule: with ``Delete``, a finalizer deletes what it made first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import NORMAL
from elasticsan_snapshotter.kubernetes.resources import (
    SNAPSHOT_SCHEDULE,
    VOLUME_GROUP_SNAPSHOT,
    VOLUME_SNAPSHOT,
)
from elasticsan_snapshotter.kubernetes.schedule_exports import ScheduledExports
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

if TYPE_CHECKING:
    from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler


async def sync_finalizer(rec: ScheduleReconciler, body: Body, spec: sspec.ScheduleSpec) -> Body:
    """The finalizer is there exactly while ``deletionPolicy`` is ``Delete``."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    want = spec.deletion_policy == sspec.DELETE
    if want == (sspec.FIN_SCHEDULE in finalizers):
        return body
    if not want:
        await rec.api.remove_finalizer(SNAPSHOT_SCHEDULE, body, sspec.FIN_SCHEDULE)
        return body
    patch = {
        "metadata": {
            "finalizers": [*finalizers, sspec.FIN_SCHEDULE],
            "resourceVersion": meta.get("resourceVersion"),
        }
    }
    updated = await rec.api.patch(SNAPSHOT_SCHEDULE, meta["name"], patch, meta["namespace"])
    rec.schedules.apply("MODIFIED", updated)
    return updated


async def finalize(rec: ScheduleReconciler, body: Body) -> Outcome:
    """``deletionPolicy: Delete``: what the schedule made goes first, then the finalizer."""
    meta = body["metadata"]
    if sspec.FIN_SCHEDULE not in (meta.get("finalizers") or []):
        return None
    namespace = meta["namespace"]
    try:
        selector = f"{sspec.LABEL_SCHEDULE_UID}={meta['uid']}"
        await ScheduledExports.for_deletion(rec, body).delete_all(selector)
        for resource in (VOLUME_SNAPSHOT, VOLUME_GROUP_SNAPSHOT):
            for made in await rec.api.list(resource, namespace, label_selector=selector):
                await rec.api.delete(
                    resource, made["metadata"]["name"], namespace, uid=made["metadata"]["uid"]
                )
                metrics.RETENTION_DELETIONS.labels(resource.kind).inc()
        await rec.api.remove_finalizer(SNAPSHOT_SCHEDULE, body, sspec.FIN_SCHEDULE)
    except SnapshotterError as exc:
        await rec.recorder.error(body, exc)
        return Requeue(exc.retry_after) if exc.retry_after else Requeue()
    await rec.recorder.record(body, NORMAL, "Deleted", "deleted the snapshots and exports of this schedule")
    return None


__all__ = ["finalize", "sync_finalizer"]
