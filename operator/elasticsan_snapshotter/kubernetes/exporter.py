"""ElasticSanSnapshotExport: Elastic SAN snapshots copied to managed-disk snapshots.

An export object names one source (a VolumeSnapshot in its namespace, a
VolumeSnapshotContent, or an Elastic SAN snapshot handle) and a target
managed-disk snapshot. The reconciler:

* validates everything it can before any Azure write (source exists and is
  ours, at most 4 TiB, target in the SAN's region, target name not taken by a
  different source), and records a final error (phase ``Failed``) when a
  check can never pass; a source that is still being created only keeps the
  export ``Pending``;
* writes ``phase: Exporting`` with the target's ARM ID *before* the Azure
  create, so that a restart resumes tracking that same managed-disk snapshot
  (the name is deterministic and the create adopts an existing one): never two;
* polls ``completionPercent`` and writes status once per change, with Events at
  each phase transition; transient Azure faults only produce Warning Events and
  are retried with backoff, without touching the phase;
* protects a source VolumeSnapshot with finalizer ``FIN_EXPORT_SOURCE`` while an
  export from it runs and releases it on every path (success, failure,
  deletion), once no other running export needs it;
* holds its own finalizer ``FIN_EXPORT`` on every export object so that
  ``deletionPolicy: Delete`` deletes the managed-disk snapshot and a deleted
  running export still releases its source.

The spec, the status and the ``exportBeforeVolumeDelete`` guard live in
``export_spec``, ``export_status`` and ``export_guard``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    bounded,
)
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, SnapshotId
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import NORMAL
from elasticsan_snapshotter.kubernetes.export_source import ExportSources, SourceNotReady
from elasticsan_snapshotter.kubernetes.export_spec import DELETE, ExportSpec, export_tags, parse_spec
from elasticsan_snapshotter.kubernetes.export_status import (
    CONDITION_READY,
    EXPORTING,
    FAILED,
    PENDING,
    SUCCEEDED,
    TERMINAL,
    now_text,
    progress_percent,
    status_patch,
)
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    FIN_EXPORT_SOURCE,
    SNAPSHOT_EXPORT,
    VOLUME_SNAPSHOT,
)
from elasticsan_snapshotter.kubernetes.stores import Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

logger = logging.getLogger(__name__)

FIN_EXPORT = f"{DRIVER_NAME}/export-protection"
"""On every export object: deletion runs the deletion policy and releases the source first."""
PROGRESS_POLL = 1.0
"""The shortest wait between looks at a running copy."""
PROGRESS_POLL_MAX = 120.0
"""The longest: copies of large snapshots take hours, and each look is an Azure read."""


# --- the reconciler -------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class ExportReconciler(Reconciler):
    exports: Store
    export_resource_group: str = ""
    group_driver_name: str = ""
    poll_interval: float = PROGRESS_POLL

    @property
    def _sources(self) -> ExportSources:
        return ExportSources(
            api=self.api,
            azure=self.azure,
            subscription=self.subscription,
            driver_name=self.driver_name,
            export_resource_group=self.export_resource_group,
            group_driver_name=self.group_driver_name,
        )

    async def reconcile(self, key: str) -> Outcome:
        body = self.exports.get(key)
        if body is None:
            return None
        try:
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                return await self._finalize(body)
            body = await self._ensure_finalizer(body)
            status = body.get("status") or {}
            phase = status.get("phase")
            if phase in TERMINAL:
                await self._refresh_generation(body)
                await self._release_source(body)
                return None
            try:
                spec = parse_spec(body)
            except InvalidRequest as exc:
                return await self._fail(body, exc)
            if phase == EXPORTING and status.get("diskSnapshotId") and status.get("sourceSnapshotId"):
                return await self._track(body, spec)
            return await self._start(body, spec)
        except SnapshotterError as exc:
            return await self._trouble(body, exc)

    async def deleted(self, body: Body) -> None:
        """The object is gone (its DELETED event): make sure its source is not held for it."""
        try:
            await self._release_source(body)
        except SnapshotterError as exc:
            logger.warning("could not release the source of deleted export %s: %s", _key(body), exc)

    # -- start: validate, then Exporting -------------------------------------------------

    async def _start(self, body: Body, spec: ExportSpec) -> Outcome:
        try:
            source = await self._sources.resolve(body, spec)
        except SourceNotReady as waiting:
            await self._write(body, PENDING, waiting.reason, str(waiting), source=spec.describe_source())
            await self.recorder.record(body, NORMAL, "ExportPending", str(waiting))
            return Requeue(waiting.retry_after)
        except SnapshotterError as exc:
            if exc.retryable:
                raise
            return await self._fail(body, exc)
        if source.volume_snapshot:
            await self._protect_source(body, source.volume_snapshot)
        try:
            target, size_gib, _location = await self._sources.checked_target(body, spec, source)
        except SourceNotReady as waiting:
            await self._write(body, PENDING, waiting.reason, str(waiting), source=source.description)
            await self.recorder.record(body, NORMAL, "ExportPending", str(waiting))
            return Requeue(waiting.retry_after)
        except SnapshotterError as exc:
            if exc.retryable:
                raise
            return await self._fail(body, exc)
        message = f"exporting {source.description} ({source.snapshot.arm_id}) to managed-disk snapshot {target.arm_id}"
        body = await self._write(
            body,
            EXPORTING,
            "ExportStarted",
            message,
            source=source.description,
            sourceSnapshotId=source.snapshot.arm_id,
            diskSnapshotId=target.arm_id,
            diskSnapshotName=target.name,
            sizeGiB=size_gib,
            progressPercent=0,
            startTime=now_text(),
        )
        await self.recorder.record(body, NORMAL, "ExportStarted", message)
        return await self._track(body, spec)

    # -- Exporting: create or adopt, then follow the copy ---------------------------------

    async def _track(self, body: Body, spec: ExportSpec) -> Outcome:
        status = body.get("status") or {}
        target = DiskSnapshotId.parse(status["diskSnapshotId"], self.subscription)
        source = SnapshotId.parse(status["sourceSnapshotId"], self.subscription)
        try:
            info = await self.azure.get_disk_snapshot(target)
        except NotFound:
            # Not created yet (or a restart came between the status write and the create).
            san = await self.azure.get_elastic_san(source.volume_group.san)
            meta = body["metadata"]
            info = await self.azure.create_disk_snapshot(
                target,
                source,
                location=spec.location or san.location,
                sku=spec.sku,
                incremental=spec.incremental,
                tags=export_tags(meta["namespace"], meta["name"], spec, source),
            )
        if info.source is not None and info.source != source:
            return await self._fail(
                body,
                AlreadyExists(
                    f"managed-disk snapshot {target.arm_id} was made from {info.source.arm_id}, not from "
                    f"{source.arm_id}"
                ),
            )
        try:
            done, percent = progress_percent(info)
        except SnapshotterError as exc:
            if exc.retryable:
                raise
            return await self._fail(body, exc)
        size = info.size_gib if info.size_gib is not None else status.get("sizeGiB")
        if done:
            message = f"exported {status.get('source')} to managed-disk snapshot {target.arm_id}"
            body = await self._write(
                body,
                SUCCEEDED,
                "ExportSucceeded",
                message,
                progressPercent=100,
                sizeGiB=size,
                completionTime=now_text(),
            )
            await self.recorder.record(body, NORMAL, "ExportSucceeded", message)
            await self._release_source(body)
            return None
        if percent != status.get("progressPercent") or size != status.get("sizeGiB"):
            await self._write(
                body,
                EXPORTING,
                "ExportStarted",
                _condition_message(body),
                progressPercent=max(percent, int(status.get("progressPercent") or 0)),
                sizeGiB=size,
            )
        elapsed = (datetime.now(UTC) - _parse_time(status.get("startTime"))).total_seconds()
        return Requeue(
            decisions.next_progress_poll(
                elapsed, info.completion_percent, minimum=self.poll_interval, maximum=PROGRESS_POLL_MAX
            )
        )

    # -- failure and trouble ---------------------------------------------------------------

    async def _fail(self, body: Body, error: SnapshotterError) -> Outcome:
        """A final error: phase Failed with the message, a Warning Event, the source released."""
        await self._trouble(body, error)
        return None  # Failed is an end: nothing to look at again

    async def _trouble(self, body: Body, error: SnapshotterError) -> Outcome:
        """Any error, through the one retry policy: retryable ones keep the phase, final ones fail it."""
        deleting = bool((body.get("metadata") or {}).get("deletionTimestamp"))

        async def failed(error: SnapshotterError) -> None:
            updated = await self._write(body, FAILED, error.reason, bounded(str(error)), progressPercent=None)
            await self._release_source(updated)

        return await retry.handle(
            self.recorder,
            body,
            error,
            resource=SNAPSHOT_EXPORT.kind,
            reason="ExportFailed" if error.final else None,
            write_final=None if deleting else failed,
        )

    # -- status and finalizers -------------------------------------------------------------

    async def _write(self, body: Body, phase: str, reason: str, message: str, **fields: Any) -> Body:
        meta = body["metadata"]
        patch = status_patch(
            body.get("status") or {},
            phase,
            reason,
            message,
            generation=int(meta.get("generation") or 0),
            **fields,
        )
        if not patch:
            return body
        updated = await self.api.patch(
            SNAPSHOT_EXPORT, meta["name"], {"status": patch}, meta["namespace"], subresource="status"
        )
        if updated.get("metadata", {}).get("name"):
            self.exports.apply("MODIFIED", updated)
            return updated
        return body

    async def _refresh_generation(self, body: Body) -> None:
        """A spec change after the end (deletionPolicy) is acknowledged in the conditions."""
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        generation = int(body["metadata"].get("generation") or 0)
        if conditions and all(c.get("observedGeneration") == generation for c in conditions):
            return
        ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == CONDITION_READY), {})
        await self._write(
            body,
            str(status["phase"]),
            str(ready.get("reason") or status["phase"]),
            str(ready.get("message") or ""),
        )

    async def _ensure_finalizer(self, body: Body) -> Body:
        if _has_finalizer(body, FIN_EXPORT):
            return body
        meta = body["metadata"]
        patch = {
            "metadata": {
                "finalizers": [*(meta.get("finalizers") or []), FIN_EXPORT],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        updated = await self.api.patch(SNAPSHOT_EXPORT, meta["name"], patch, meta["namespace"])
        self.exports.apply("MODIFIED", updated)
        return updated

    async def _protect_source(self, body: Body, vs_name: str) -> None:
        namespace = body["metadata"]["namespace"]
        vs = await self.api.get(VOLUME_SNAPSHOT, vs_name, namespace)
        if vs is None or _has_finalizer(vs, FIN_EXPORT_SOURCE):
            return
        meta = vs["metadata"]
        patch = {
            "metadata": {
                "finalizers": [*(meta.get("finalizers") or []), FIN_EXPORT_SOURCE],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        await self.api.patch(VOLUME_SNAPSHOT, vs_name, patch, namespace)
        logger.info("VolumeSnapshot %s/%s is protected while export %s runs", namespace, vs_name, _key(body))

    async def _release_source(self, body: Body) -> None:
        """Remove the source VolumeSnapshot's finalizer unless another running export still needs it."""
        vs_name = ((body.get("spec") or {}).get("source") or {}).get("volumeSnapshotName")
        if not vs_name:
            return
        namespace = body["metadata"]["namespace"]
        me = body["metadata"].get("uid")
        # No await between this look at the store and the decision: concurrent finishers see each other.
        for other in self.exports:
            other_meta = other.get("metadata") or {}
            if (
                other_meta.get("uid") != me
                and other_meta.get("namespace") == namespace
                and ((other.get("spec") or {}).get("source") or {}).get("volumeSnapshotName") == vs_name
                and not other_meta.get("deletionTimestamp")
                and (other.get("status") or {}).get("phase") not in TERMINAL
            ):
                return
        vs = await self.api.get(VOLUME_SNAPSHOT, vs_name, namespace)
        if vs is not None and _has_finalizer(vs, FIN_EXPORT_SOURCE):
            await self.api.remove_finalizer(VOLUME_SNAPSHOT, vs, FIN_EXPORT_SOURCE)
            logger.info("VolumeSnapshot %s/%s released", namespace, vs_name)

    # -- deletion of the export object ------------------------------------------------------

    async def _finalize(self, body: Body) -> Outcome:
        if not _has_finalizer(body, FIN_EXPORT):
            await self._release_source(body)
            return None
        try:
            await self._release_source(body)
            # Read directly, so that even a spec this version cannot parse never blocks deletion.
            if (body.get("spec") or {}).get("deletionPolicy") == DELETE:
                await self._delete_disk_snapshot(body)
        except SnapshotterError as exc:
            return await retry.handle(self.recorder, body, exc, resource=SNAPSHOT_EXPORT.kind)
        await self.api.remove_finalizer(SNAPSHOT_EXPORT, body, FIN_EXPORT)
        return None

    async def _delete_disk_snapshot(self, body: Body) -> None:
        status = body.get("status") or {}
        if not status.get("diskSnapshotId") or not status.get("sourceSnapshotId"):
            return  # never got past the checks: nothing of ours exists
        target = DiskSnapshotId.parse(status["diskSnapshotId"], self.subscription)
        source = SnapshotId.parse(status["sourceSnapshotId"], self.subscription)
        try:
            info = await self.azure.get_disk_snapshot(target)
        except NotFound:
            return
        if info.source is not None and info.source != source:
            return  # somebody else's snapshot under this name: never ours to delete
        await self.azure.delete_disk_snapshot(target)
        await self.recorder.record(
            body,
            NORMAL,
            "DiskSnapshotDeleted",
            f"deleted managed-disk snapshot {target.arm_id} (deletionPolicy Delete)",
        )


def _parse_time(text: object) -> datetime:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.now(UTC)


def _has_finalizer(body: Body, finalizer: str) -> bool:
    return finalizer in ((body.get("metadata") or {}).get("finalizers") or [])


def _key(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _condition_message(body: Body) -> str:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == CONDITION_READY:
            return str(condition.get("message") or "")
    return ""


__all__ = ["FIN_EXPORT", "ExportReconciler"]
