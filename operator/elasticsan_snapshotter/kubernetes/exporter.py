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

``ExportGuard`` serves the ``exportBeforeVolumeDelete`` class parameter: before
a provisioned volume with snapshots is deleted, it creates one export object per
snapshot that has none and reports when all of them have succeeded.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain import decisions, names, parameters
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    bounded,
)
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, SnapshotId, VolumeId, parse_snapshot_handle
from elasticsan_snapshotter.domain.ports import DiskSnapshotInfo, SnapshotInfo
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING, EventRecorder
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    FIN_EXPORT_SOURCE,
    SNAPSHOT_EXPORT,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.stores import Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

logger = logging.getLogger(__name__)

PENDING = "Pending"
EXPORTING = "Exporting"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL = (SUCCEEDED, FAILED)

RETAIN = "Retain"
DELETE = "Delete"
DEFAULT_SKU = "Standard_LRS"
SKUS = ("Standard_LRS", "Premium_LRS", "Standard_ZRS")

FIN_EXPORT = f"{DRIVER_NAME}/export-protection"
"""On every export object: deletion runs the deletion policy and releases the source first."""
LABEL_VOLUME = f"{DRIVER_NAME}/exported-before-delete-of"
"""On exports made by ``ExportGuard``: the PersistentVolume whose deletion they protect against."""

CONDITION_READY = "Ready"
CONDITION_PROGRESSING = "Progressing"

# Azure tag names may not contain '/', so these carry no DNS prefix.
TAG_EXPORT = "elasticsan-snapshotter-export"
TAG_SOURCE = "elasticsan-snapshotter-source"
TAG_SOURCE_SNAPSHOT = "elasticsan-snapshotter-source-snapshot"

PROGRESS_POLL = 1.0
"""The shortest wait between looks at a running copy."""
PROGRESS_POLL_MAX = 120.0
"""The longest: copies of large snapshots take hours, and each look is an Azure read."""
SOURCE_WAIT = 5.0
"""Seconds between looks at a source that is not ready yet."""
GUARD_WAIT = 5.0
FALLBACK_NAMESPACE = "default"
"""Where protective exports go when the released claim's namespace no longer takes objects."""


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSpec:
    """``spec`` of an export, checked again here (the CRD schema refuses most mistakes first)."""

    volume_snapshot: str | None = None
    content: str | None = None
    handle: str | None = None
    target_name: str | None = None
    resource_group: str | None = None
    location: str | None = None
    sku: str = DEFAULT_SKU
    incremental: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    deletion_policy: str = RETAIN

    def describe_source(self) -> str:
        if self.volume_snapshot:
            return f"VolumeSnapshot {self.volume_snapshot}"
        if self.content:
            return f"VolumeSnapshotContent {self.content}"
        return f"snapshot {self.handle}"


def parse_spec(body: Body) -> ExportSpec:
    spec = body.get("spec") or {}
    source = spec.get("source") or {}
    target = spec.get("target") or {}
    given = {k: source.get(k) for k in ("volumeSnapshotName", "volumeSnapshotContentName", "snapshotHandle")}
    chosen = [k for k, v in given.items() if v]
    if len(chosen) != 1:
        raise InvalidRequest(
            "spec.source must name exactly one of volumeSnapshotName, volumeSnapshotContentName "
            f"or snapshotHandle, not {len(chosen)}"
        )
    sku = str(target.get("sku") or DEFAULT_SKU)
    if sku not in SKUS:
        raise InvalidRequest(f"spec.target.sku {sku!r} is not one of {', '.join(SKUS)}")
    policy = str(spec.get("deletionPolicy") or RETAIN)
    if policy not in (RETAIN, DELETE):
        raise InvalidRequest(f"spec.deletionPolicy {policy!r} is not Retain or Delete")
    name = target.get("name")
    if name:
        names.validate_disk_snapshot_name(str(name))
    return ExportSpec(
        volume_snapshot=given["volumeSnapshotName"],
        content=given["volumeSnapshotContentName"],
        handle=given["snapshotHandle"],
        target_name=str(name) if name else None,
        resource_group=target.get("resourceGroup") or None,
        location=target.get("location") or None,
        sku=sku,
        incremental=bool(target.get("incremental", False)),
        tags={str(k): str(v) for k, v in (target.get("tags") or {}).items()},
        deletion_policy=policy,
    )


def export_tags(namespace: str, name: str, spec: ExportSpec, source: SnapshotId) -> dict[str, str]:
    """Tags naming the export and its source; the user's own tags win."""
    tags = {
        TAG_EXPORT: f"{namespace}/{name}"[:256],
        TAG_SOURCE: spec.describe_source()[:256],
        TAG_SOURCE_SNAPSHOT: source.name[:256],
    }
    tags.update(spec.tags)
    return tags


# --- the status -----------------------------------------------------------------------------


def conditions_for(
    phase: str,
    reason: str,
    message: str,
    *,
    generation: int,
    previous: Iterable[Mapping[str, Any]] = (),
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions for a phase; a condition keeps its transition time while its status holds."""
    stamp = now or now_text()
    before = {str(c.get("type")): c for c in previous}
    wanted = {
        CONDITION_READY: phase == SUCCEEDED,
        CONDITION_PROGRESSING: phase in (PENDING, EXPORTING),
    }
    out: list[dict[str, Any]] = []
    for kind, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(kind) or {}
        out.append(
            {
                "type": kind,
                "status": status,
                "observedGeneration": generation,
                "lastTransitionTime": old.get("lastTransitionTime")
                if old.get("status") == status and old.get("lastTransitionTime")
                else stamp,
                "reason": reason,
                "message": message,
            }
        )
    return out


def status_patch(
    current: Mapping[str, Any],
    phase: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The ``status`` merge patch for a phase; empty when nothing would change.

    ``fields`` are further status fields (``progressPercent``, ``diskSnapshotId``, ...); a
    value of None removes the field. ``error`` is set only for ``Failed`` and removed otherwise.
    """
    stamp = now or now_text()
    wanted: dict[str, Any] = {"phase": phase, **fields}
    if phase == FAILED:
        if (current.get("error") or {}).get("message") != message:
            wanted["error"] = {"time": stamp, "message": message}
    elif current.get("error"):
        wanted["error"] = None
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    conditions = conditions_for(
        phase, reason, message, generation=generation, previous=current.get("conditions") or (), now=stamp
    )
    if _conditions_differ(current.get("conditions") or [], conditions):
        changed["conditions"] = conditions
    return changed


def _conditions_differ(old: list[Mapping[str, Any]], new: list[dict[str, Any]]) -> bool:
    keys = ("type", "status", "observedGeneration", "reason", "message")
    return [tuple(c.get(k) for k in keys) for c in old] != [tuple(c.get(k) for k in keys) for c in new]


def progress_percent(info: DiskSnapshotInfo) -> tuple[bool, int]:
    """Whether the copy is done, and its progress as a whole percent (100 only when done)."""
    progress = decisions.export_progress(info)
    if progress.done:
        return True, 100
    return False, min(99, int(progress.percent))


# --- errors ---------------------------------------------------------------------------------


class SourceNotReady(SnapshotterError):
    """The source snapshot is still being created; the export waits in ``Pending``."""

    reason = "SourceNotReady"
    retryable = True
    default_retry_after = SOURCE_WAIT


class SourceFailed(InvalidRequest):
    """The source snapshot failed for good; the export fails with its reason."""

    reason = "SourceFailed"


@dataclass(frozen=True)
class Source:
    snapshot: SnapshotId
    description: str
    volume_snapshot: str | None = None


# --- the reconciler -------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class ExportReconciler(Reconciler):
    exports: Store
    export_resource_group: str = ""
    poll_interval: float = PROGRESS_POLL

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
            source = await self._resolve_source(body, spec)
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
            target, size_gib, _location = await self._checked_target(body, spec, source)
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

    async def _resolve_source(self, body: Body, spec: ExportSpec) -> Source:
        namespace = body["metadata"]["namespace"]
        if spec.volume_snapshot:
            vs = await self.api.get(VOLUME_SNAPSHOT, spec.volume_snapshot, namespace)
            if vs is None:
                raise InvalidRequest(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} does not exist; an export's source "
                    "must be a VolumeSnapshot in the export's namespace"
                )
            if (vs.get("metadata") or {}).get("deletionTimestamp") and not _has_finalizer(
                vs, FIN_EXPORT_SOURCE
            ):
                raise InvalidRequest(f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is being deleted")
            content_name = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
            if not content_name:
                raise SourceNotReady(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is not bound to a "
                    "VolumeSnapshotContent yet"
                )
            snapshot = await self._content_snapshot(
                content_name, f"VolumeSnapshot {namespace}/{spec.volume_snapshot}"
            )
            if not (vs.get("status") or {}).get("readyToUse"):
                raise SourceNotReady(
                    f"VolumeSnapshot {namespace}/{spec.volume_snapshot} is not ready to use yet"
                )
            return Source(snapshot, spec.describe_source(), spec.volume_snapshot)
        if spec.content:
            snapshot = await self._content_snapshot(spec.content, f"VolumeSnapshotContent {spec.content}")
            return Source(snapshot, spec.describe_source())
        assert spec.handle is not None
        return Source(
            self._elastic_san_snapshot(spec.handle, "spec.source.snapshotHandle"), spec.describe_source()
        )

    async def _content_snapshot(self, content_name: str, what: str) -> SnapshotId:
        itself = f"VolumeSnapshotContent {content_name}"
        named = itself if what == itself else f"{itself} of {what}"
        content = await self.api.get(VOLUME_SNAPSHOT_CONTENT, content_name)
        if content is None:
            raise InvalidRequest(f"{named} does not exist")
        driver = (content.get("spec") or {}).get("driver")
        if driver != self.driver_name:
            raise InvalidRequest(
                f"{what} is handled by driver {driver!r}, not {self.driver_name!r}: only Elastic SAN "
                "snapshots of this driver can be exported"
            )
        status = content.get("status") or {}
        failure = (status.get("error") or {}).get("message")
        if failure and not status.get("readyToUse"):
            # A content's status.error is final by contract: waiting would wait forever.
            raise SourceFailed(f"{named} failed: {bounded(str(failure), 512)}")
        handle = status.get("snapshotHandle") or ((content.get("spec") or {}).get("source") or {}).get(
            "snapshotHandle"
        )
        if not handle:
            raise SourceNotReady(f"{named} has no snapshot handle yet")
        snapshot = self._elastic_san_snapshot(str(handle), f"the snapshot handle of {what}")
        if not status.get("readyToUse"):
            raise SourceNotReady(f"{what} is not ready to use yet")
        return snapshot

    def _elastic_san_snapshot(self, handle: str, what: str) -> SnapshotId:
        target = parse_snapshot_handle(handle, self.subscription)
        if isinstance(target, DiskSnapshotId):
            raise InvalidRequest(
                f"{what} names managed-disk snapshot {target.arm_id}, which is already a managed-disk "
                "snapshot; only Elastic SAN snapshots can be exported"
            )
        return target

    async def _checked_target(
        self, body: Body, spec: ExportSpec, source: Source
    ) -> tuple[DiskSnapshotId, int, str]:
        """Every check before the Azure write: source exists and is done, 4 TiB, region, name."""
        try:
            info = await self.azure.get_snapshot(source.snapshot)
        except NotFound:
            raise InvalidRequest(
                f"Elastic SAN snapshot {source.snapshot.arm_id} ({source.description}) does not exist"
            ) from None
        if not decisions.snapshot_ready(info):
            raise SourceNotReady(f"Elastic SAN snapshot {source.snapshot.arm_id} is still being created")
        san = await self.azure.get_elastic_san(source.snapshot.volume_group.san)
        location = spec.location or san.location
        decisions.check_export(
            source_volume_size_gib=info.source_volume_size_gib,
            san_region=san.location,
            target_region=location,
        )
        target = self._target(body, spec, source.snapshot)
        try:
            existing = await self.azure.get_disk_snapshot(target)
        except NotFound:
            existing = None
        if existing is not None and existing.source != source.snapshot:
            origin = existing.source.arm_id if existing.source else "no Elastic SAN snapshot"
            raise AlreadyExists(
                f"managed-disk snapshot {target.arm_id} already exists and was made from {origin}, not from "
                f"{source.snapshot.arm_id}; choose another spec.target.name or resourceGroup"
            )
        return target, info.source_volume_size_gib, location

    def _target(self, body: Body, spec: ExportSpec, source: SnapshotId) -> DiskSnapshotId:
        meta = body["metadata"]
        name = spec.target_name or names.export_disk_snapshot_name(meta["namespace"], meta["name"])
        group = spec.resource_group or self.export_resource_group or source.volume_group.san.resource_group
        return DiskSnapshotId(source.volume_group.san.subscription, group, name)

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


# --- protection: export before a volume is deleted ------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the volume releaser should do about a volume that still has snapshots."""

    delete_snapshots: bool = False
    """Every snapshot is exported: delete the volume together with its snapshots."""
    wait: float | None = None
    """Exports are running: look again after this many seconds."""


def guard_export_name(snapshot: SnapshotId) -> str:
    """The export object made for one snapshot: ``keep-<snapshot name>-<hash of its ARM ID>``.

    The hash keeps snapshots of the same name in different volume groups apart; a snapshot
    name that is no DNS label leaves only ``keep-<hash>``.
    """
    digest = hashlib.sha256(snapshot.arm_id.lower().encode()).hexdigest()
    readable = f"keep-{snapshot.name.lower()}"[:54].rstrip("-")
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", readable):
        return f"{readable}-{digest[:8]}"
    return f"keep-{digest[:16]}"


class ExportGuard:
    """``exportBeforeVolumeDelete``: an export object per snapshot, and the volume deleted only after them."""

    def __init__(
        self,
        *,
        subscription: str,
        api: KubeApi,
        recorder: EventRecorder,
        exports: Store,
        contents: Store,
        snapshot_classes: Store,
    ) -> None:
        self.subscription = subscription
        self.api = api
        self.recorder = recorder
        self.exports = exports
        self.contents = contents
        self.snapshot_classes = snapshot_classes

    def covered(self, snapshot: SnapshotInfo, storage_class: parameters.StorageClassParameters) -> bool:
        """The StorageClass, or the VolumeSnapshotClass the snapshot was taken with, asks for export."""
        if storage_class.export_before_volume_delete:
            return True
        content = self._content_of(snapshot.id)
        class_name = ((content or {}).get("spec") or {}).get("volumeSnapshotClassName")
        snapshot_class = self.snapshot_classes.get(str(class_name)) if class_name else None
        if snapshot_class is None:
            return False
        parsed = parameters.parse_snapshot_class(
            snapshot_class.get("parameters"), f"VolumeSnapshotClass {class_name}"
        )
        return parsed.export_before_volume_delete

    async def before_volume_delete(
        self,
        pv: Body,
        volume: VolumeId,
        snapshots: list[SnapshotInfo],
        storage_class: parameters.StorageClassParameters,
    ) -> Verdict:
        covered = [s for s in snapshots if self.covered(s, storage_class)]
        if not covered:
            return Verdict()
        claim_namespace = ((pv.get("spec") or {}).get("claimRef") or {}).get(
            "namespace"
        ) or FALLBACK_NAMESPACE
        pending: list[str] = []
        failed: list[str] = []
        for snapshot in covered:
            export = self._export_of(snapshot.id) or await self._create_export(
                pv, claim_namespace, volume, snapshot.id
            )
            phase = (export.get("status") or {}).get("phase")
            label = f"{export['metadata']['namespace']}/{export['metadata']['name']}"
            if phase == FAILED:
                failed.append(label)
            elif phase != SUCCEEDED:
                pending.append(label)
        if failed:
            await self.recorder.record(
                pv,
                WARNING,
                "ExportBeforeDeleteFailed",
                f"Elastic SAN volume {volume.arm_id} is kept: export(s) {', '.join(sorted(failed))} failed; "
                "see their status, fix the cause and delete them to try again",
            )
            return Verdict()
        if pending:
            await self.recorder.record(
                pv,
                NORMAL,
                "ExportingBeforeDelete",
                f"Elastic SAN volume {volume.arm_id} is deleted once its snapshots are exported: waiting for "
                f"{', '.join(sorted(pending))}",
            )
            return Verdict(wait=GUARD_WAIT)
        if len(covered) < len(snapshots):
            return Verdict()  # some snapshots are not to be exported: the volume stays, with the usual Event
        await self.recorder.record(
            pv,
            NORMAL,
            "SnapshotsExported",
            f"all {len(covered)} snapshot(s) of Elastic SAN volume {volume.arm_id} are exported to managed-disk "
            "snapshots; deleting the volume with its snapshots",
        )
        return Verdict(delete_snapshots=True)

    def _content_of(self, snapshot: SnapshotId) -> Body | None:
        for content in self.contents:
            handle = (content.get("status") or {}).get("snapshotHandle") or (
                (content.get("spec") or {}).get("source") or {}
            ).get("snapshotHandle")
            if not handle:
                continue
            try:
                if parse_snapshot_handle(str(handle), self.subscription) == snapshot:
                    return content
            except InvalidRequest:
                continue
        return None

    def _export_of(self, snapshot: SnapshotId) -> Body | None:
        """An export of this snapshot that has not failed (or, failing that, a failed one)."""
        found: Body | None = None
        for export in self.exports:
            status = export.get("status") or {}
            source_id = status.get("sourceSnapshotId")
            if not source_id:
                continue
            try:
                same = SnapshotId.parse(str(source_id), self.subscription) == snapshot
            except InvalidRequest:
                continue
            if same and (export.get("metadata") or {}).get("deletionTimestamp") is None:
                if status.get("phase") != FAILED:
                    return export
                found = export
        return found

    async def _create_export(
        self, pv: Body, claim_namespace: str, volume: VolumeId, snapshot: SnapshotId
    ) -> Body:
        name = guard_export_name(snapshot)
        for namespace in dict.fromkeys((claim_namespace, FALLBACK_NAMESPACE)):
            existing = self.exports.get(f"{namespace}/{name}")
            if existing is not None:
                return existing
        try:
            return await self._create_export_in(pv, claim_namespace, name, volume, snapshot)
        except (NotFound, Forbidden):
            if claim_namespace == FALLBACK_NAMESPACE:
                raise
            # The claim's namespace is gone or terminating (namespace deletion releases volumes).
            return await self._create_export_in(pv, FALLBACK_NAMESPACE, name, volume, snapshot)

    async def _create_export_in(
        self, pv: Body, namespace: str, name: str, volume: VolumeId, snapshot: SnapshotId
    ) -> Body:
        body: Body = {
            "apiVersion": SNAPSHOT_EXPORT.api_version,
            "kind": SNAPSHOT_EXPORT.kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LABEL_VOLUME: pv["metadata"]["name"]},
                "annotations": {f"{DRIVER_NAME}/volume-id": volume.arm_id},
            },
            "spec": {"source": {"snapshotHandle": snapshot.arm_id}, "deletionPolicy": RETAIN},
        }
        try:
            created = await self.api.create(SNAPSHOT_EXPORT, body, namespace)
        except AlreadyExists:
            found = await self.api.get(SNAPSHOT_EXPORT, name, namespace)
            if found is None:
                raise
            created = found
        self.exports.apply("ADDED", created)
        await self.recorder.record(
            pv,
            NORMAL,
            "ExportCreated",
            f"created ElasticSanSnapshotExport {namespace}/{name} for snapshot {snapshot.name} before deleting "
            f"volume {volume.arm_id}",
        )
        return created


__all__ = [
    "DELETE",
    "EXPORTING",
    "FAILED",
    "FIN_EXPORT",
    "LABEL_VOLUME",
    "PENDING",
    "RETAIN",
    "SUCCEEDED",
    "ExportGuard",
    "ExportReconciler",
    "ExportSpec",
    "Verdict",
    "conditions_for",
    "export_tags",
    "guard_export_name",
    "parse_spec",
    "progress_percent",
    "status_patch",
]
