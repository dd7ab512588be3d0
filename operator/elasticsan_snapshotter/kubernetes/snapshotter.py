"""The snapshotter role: VolumeSnapshotContents of our driver, as csi-snapshotter would.

Also pre-provisioned contents of the PVs' driver naming an Elastic SAN snapshot, served alike
(content_routing.py says which contents of that driver are ours).

Contract (external-snapshotter v8 sidecar): status goes through the status
subresource; ``snapshotHandle``, ``creationTime`` (Unix ns) and
``restoreSize`` (bytes) are written once; ``readyToUse`` follows Azure;
``error`` is written only for final errors (Velero fails a backup on any
content error) and cleared when ready; the ``volumesnapshot-being-created``
annotation surrounds the Azure create (a content the operator made needs none,
see ``create_in_flight``); deletion happens only when
snapshot-controller marked the content ``volumesnapshot-being-deleted`` (or
it is pre-provisioned and unbound), Azure is touched only for
``deletionPolicy: Delete``, a missing snapshot counts as deleted, and the
bound-protection finalizer comes off on every path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import decisions, names, parameters
from elasticsan_snapshotter.domain.errors import InvalidRequest, NotFound, SnapshotterError, bounded
from elasticsan_snapshotter.domain.groups import GROUP_DRIVER_NAME
from elasticsan_snapshotter.domain.identity import (
    DiskSnapshotId,
    SnapshotId,
    VolumeId,
    parse_snapshot_handle,
    try_parse,
)
from elasticsan_snapshotter.domain.mapping import SanIndex, volume_of
from elasticsan_snapshotter.domain.ports import SnapshotInfo
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.content_making import (
    is_made,
    snapshot_key,
    snapshot_seen,
    waiting_on_snapshot_controller,
)
from elasticsan_snapshotter.kubernetes.content_routing import imported_snapshot
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_BEING_CREATED,
    ANN_BEING_DELETED,
    FIN_CONTENT_BOUND,
    SNAPSHOT_EXPORT,
    SNAPSHOT_GROUP,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

logger = logging.getLogger(__name__)

EXPORT_WAIT = 10.0
"""A deleted content whose snapshot an export still reads is looked at again this often."""


def _snapshot_of(content: Body) -> Body:
    """The bound VolumeSnapshot, as far as an Event about it needs: users look there, not at contents."""
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/v1",
        "kind": "VolumeSnapshot",
        "metadata": {k: ref.get(k) for k in ("name", "namespace", "uid")},
    }


def _finished(info: SnapshotInfo) -> bool:
    try:
        return decisions.snapshot_ready(info)
    except SnapshotterError:
        return True  # failed for good: nothing is running any more


def _is_ready(body: Body) -> bool:
    status = body.get("status") or {}
    return bool(status.get("readyToUse") and status.get("snapshotHandle"))


def create_in_flight(content: Body) -> bool:
    """Whether an Azure create may be running for this content, so deleting it must wait.

    The being-created annotation says so for the contents snapshot-controller made. A content
    the operator made says so by itself: from its creation, which comes before any Azure call,
    until its status says ready or failed (the same moments the annotation would span), so it
    needs no annotation writes.
    """
    meta = content.get("metadata") or {}
    if ANN_BEING_CREATED in (meta.get("annotations") or {}):
        return True
    if not is_made(content):
        return False
    status = content.get("status") or {}
    return not status.get("readyToUse") and not status.get("error")


def has_work(content: Body) -> bool:
    """Whether reconciling this content could do anything; a settled one is not queued.

    At start-up every listed content would otherwise pass through the queue, ahead of the
    new ones (10,000 ready contents: 10,000 reconciles that end at their first check).
    """
    meta = content.get("metadata") or {}
    if meta.get("deletionTimestamp") or ANN_BEING_CREATED in (meta.get("annotations") or {}):
        return True
    imported = ((content.get("spec") or {}).get("source") or {}).get("snapshotHandle")
    handle = (content.get("status") or {}).get("snapshotHandle")
    return not (_is_ready(content) and (not imported or handle == imported))


@dataclass(frozen=True)
class SnapshotState:
    handle: str
    creation_time_ns: int
    restore_size: int | None
    ready: bool


@dataclass(kw_only=True, eq=False)
class ContentReconciler(Reconciler):
    index: SanIndex
    contents: Store
    volumes: PersistentVolumes
    exports: Store | None = None
    """ElasticSanSnapshotExports: deletion of a snapshot waits while one of them copies it."""
    snapshot_classes: Store | None = None
    """VolumeSnapshotClasses: their parameters are checked before a snapshot is taken."""
    group_driver_name: str = GROUP_DRIVER_NAME
    """The PVs' CSI driver: its pre-provisioned contents of Elastic SAN snapshots are served too."""
    snapshots: Store | None = None
    """VolumeSnapshots (slimmed): whether the one a made content points to still exists."""
    made: set[str] = field(default_factory=set)
    """Contents this process made and has not yet asked Azure about (shared with the maker)."""
    take_up_timeout: float = 60.0
    """How long a ready made content may wait for its bound VolumeSnapshot to say ready."""
    clock: Callable[[], float] = time.monotonic
    _exports_listed: bool = field(default=False, init=False)
    _ready_since: dict[str, float] = field(default_factory=dict, init=False)
    """Ready made contents whose VolumeSnapshot did not say ready yet: since when, by ``clock``."""

    def is_ours(self, body: Body) -> bool:
        spec = body.get("spec") or {}
        source = spec.get("source") or {}
        if spec.get("driver") == self.driver_name:
            return bool(source.get("volumeHandle") or source.get("snapshotHandle"))
        return imported_snapshot(body, self.group_driver_name, self.subscription) is not None

    async def reconcile(self, name: str) -> Outcome:
        body = self.contents.get(name)
        if body is None or not self.is_ours(body):
            return None
        try:
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                return await self._delete(body)
            if is_made(body) and await self._snapshot_gone(body):
                return await self._release_made(body)
            if (body["spec"]["source"]).get("volumeHandle"):
                return await self._create(body)
            return await self._import(body)
        except SnapshotterError as exc:
            return await self._failed(body, exc)

    # -- dynamic snapshots -------------------------------------------------------

    async def _create(self, body: Body) -> Outcome:
        if _is_ready(body):
            # A crash between the ready write and the removal leaves the annotation behind;
            # every look at a ready content (start-up included) takes it off.
            await self._set_being_created(body, False)
            return await self._wait_for_take_up(body) if is_made(body) else None
        uid = ((body["spec"].get("volumeSnapshotRef") or {}).get("uid")) or ""
        if not uid:
            return None  # snapshot-controller always binds dynamic contents; nothing to do yet
        await self._check_class(body)
        volume = await self._source_volume(body["spec"]["source"]["volumeHandle"])
        snapshot = volume.volume_group.snapshot(names.snapshot_name(uid))
        # Without the annotation and a handle, no earlier attempt can have sent the create (the
        # annotation goes on before every Azure call), so the lookup by name is skipped; for a
        # content the operator made, only while this process, which made it, has not asked yet.
        name = body["metadata"]["name"]
        made = is_made(body)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        fresh = name in self.made or (
            not made
            and ANN_BEING_CREATED not in annotations
            and not (body.get("status") or {}).get("snapshotHandle")
        )
        self.made.discard(name)
        if not made:
            # Set once per create attempt and kept while Azure is still creating: re-polls of an
            # unready snapshot write nothing, and never reopen the window between set and removal.
            await self._set_being_created(body, True)
        started = time.monotonic()
        info = await self.azure.create_snapshot(snapshot, volume, fresh=fresh)
        ready = decisions.snapshot_ready(info)
        state = SnapshotState(
            handle=snapshot.handle(self.subscription),
            creation_time_ns=decisions.creation_time_ns(info.created_at or datetime.now(UTC)),
            restore_size=decisions.restore_size_bytes(info.source_volume_size_gib),
            ready=ready,
        )
        await self._write_status(body, state)
        if ready:
            await self._set_being_created(body, False)
        logger.info(
            "snapshot %s of %s for VolumeSnapshotContent %s: %s in %.1fs",
            snapshot.name,
            volume.arm_id,
            body["metadata"]["name"],
            info.provisioning_state,
            time.monotonic() - started,
        )
        if ready:
            metrics.SNAPSHOTS_CREATED.inc()
            metrics.observe_ready(body)
            # The ready content's own watch event queues nothing (it is settled): the look at
            # whether snapshot-controller takes it up starts here.
            return await self._wait_for_take_up(self.contents.get(name) or body) if made else None
        return Requeue()

    async def _check_class(self, body: Body) -> None:
        """The class's parameters, by the one parser: a bad value is final, an unknown key a Warning."""
        name = body["spec"].get("volumeSnapshotClassName")
        found = self.snapshot_classes.get(str(name)) if name and self.snapshot_classes is not None else None
        if found is None:
            return
        what = f"VolumeSnapshotClass {name}"
        parsed = parameters.parse_snapshot_class(found.get("parameters"), what)
        if parsed.unknown:
            message = parameters.unknown_message(parsed.unknown, parameters.SNAPSHOT_CLASS_KEYS, what)
            await self.recorder.record(_snapshot_of(body), WARNING, "UnknownParameter", message)

    async def _source_volume(self, volume_handle: str) -> VolumeId:
        pv = await self.volumes.by_volume_handle(volume_handle)
        if pv is None:
            # Volumes this operator provisioned carry our handle; no PV lookup needed.
            volume = try_parse(VolumeId.parse, volume_handle, self.subscription)
            if volume is None:
                raise InvalidRequest(
                    f"no PersistentVolume has spec.csi.volumeHandle {volume_handle!r}, and the handle "
                    "is not an Elastic SAN volume ID"
                )
            return volume
        return await volume_of(pv, index=self.index, default_subscription=self.subscription)

    # -- contents the operator made ------------------------------------------------

    async def _snapshot_gone(self, body: Body) -> bool:
        """Whether the VolumeSnapshot a made content points to no longer exists (asked of the API)."""
        if self.snapshots is None:
            return False
        if snapshot_seen(body, self.snapshots):
            return False
        return await self._snapshot_from_api(body) is None

    async def _snapshot_from_api(self, body: Body) -> Body | None:
        """The VolumeSnapshot this content points to, read now; None if gone or another uid's."""
        ref = body["spec"].get("volumeSnapshotRef") or {}
        current = await self.api.get(VOLUME_SNAPSHOT, str(ref.get("name")), str(ref.get("namespace")))
        return current if current is not None and current["metadata"].get("uid") == ref.get("uid") else None

    async def _release_made(self, body: Body) -> Outcome:
        """A made content whose VolumeSnapshot went before snapshot-controller bound it.

        snapshot-controller never deletes a content whose VolumeSnapshot is gone, so the
        operator does what it would have done for a bound one: mark the content being deleted,
        whatever the policy, and with ``deletionPolicy: Delete`` delete it; the deletion path
        then deletes the Azure snapshot. With Retain the content stays, and deleting it later
        leaves Azure alone.
        """
        name = body["metadata"]["name"]
        if ANN_BEING_DELETED not in ((body.get("metadata") or {}).get("annotations") or {}):
            updated = await self.api.patch(
                VOLUME_SNAPSHOT_CONTENT, name, {"metadata": {"annotations": {ANN_BEING_DELETED: "yes"}}}
            )
            self._remember(updated)
        if body["spec"].get("deletionPolicy") != "Delete":
            return None
        await self.recorder.record(
            body,
            NORMAL,
            "ContentReleased",
            f"VolumeSnapshot {snapshot_key(body)} was deleted before snapshot-controller bound this "
            "content; deleting it and its Elastic SAN snapshot, as deletionPolicy Delete says",
        )
        await self.api.delete(VOLUME_SNAPSHOT_CONTENT, name, uid=body["metadata"].get("uid"))
        return None

    async def _wait_for_take_up(self, body: Body) -> Outcome:
        """Look again until the VolumeSnapshot says ready; past the timeout, hand the content back."""
        name = body["metadata"]["name"]
        held = self.snapshots.get(snapshot_key(body)) if self.snapshots is not None else None
        if not waiting_on_snapshot_controller(body, held):
            self._ready_since.pop(name, None)
            if held is None or (held.get("status") or {}).get("readyToUse"):
                return None
            return Requeue(self.take_up_timeout)  # not bound yet: snapshot-controller's queue is behind
        waited = self.clock() - self._ready_since.setdefault(name, self.clock())
        if waited < self.take_up_timeout:
            return Requeue(self.take_up_timeout - waited)
        return await self._hand_back(body)

    async def _hand_back(self, body: Body) -> Outcome:
        """Delete a made content snapshot-controller bound but never took up, and its snapshot.

        snapshot-controller then sees the content gone and makes its own, which is reconciled
        as any other (a new Elastic SAN snapshot of the same name). The VolumeSnapshot is asked
        of the API first: only one that still waits loses its content. The Azure snapshot goes
        first, whatever the policy, as it was never offered as ready to anyone; a crash after it
        leaves a ready content that is handed back again, and no snapshot behind.
        """
        name = body["metadata"]["name"]
        current = await self._snapshot_from_api(body)
        if current is None:
            return await self._release_made(body)
        if not waiting_on_snapshot_controller(body, current):
            self._ready_since.pop(name, None)
            return None
        await self.recorder.record(
            current,
            WARNING,
            "ContentNotTakenUp",
            f"snapshot-controller bound this VolumeSnapshot to VolumeSnapshotContent {name}, ready for "
            f"{self.take_up_timeout:.0f}s, but has not marked it ready (snapshot-controller v8 can lose a "
            "content's updates when its create meets one made ahead of it); deleting that content and "
            "its Elastic SAN snapshot so that snapshot-controller makes its own",
        )
        target = await self._snapshot_to_delete(body)
        if target is not None:
            await self._delete_in_azure(target)
        await self.api.remove_finalizer(VOLUME_SNAPSHOT_CONTENT, body, FIN_CONTENT_BOUND)
        await self.api.delete(VOLUME_SNAPSHOT_CONTENT, name, uid=body["metadata"].get("uid"))
        self._ready_since.pop(name, None)
        metrics.MADE_CONTENTS_HANDED_BACK.inc()
        return None

    # -- pre-provisioned contents --------------------------------------------------

    async def _import(self, body: Body) -> Outcome:
        handle = body["spec"]["source"]["snapshotHandle"]
        status = body.get("status") or {}
        if status.get("readyToUse") and status.get("snapshotHandle") == handle:
            return None
        target = parse_snapshot_handle(handle, self.subscription)
        if isinstance(target, DiskSnapshotId):
            disk = await self.azure.get_disk_snapshot(target)
            progress = decisions.export_progress(disk)
            state = SnapshotState(
                handle=handle,
                creation_time_ns=decisions.creation_time_ns(disk.created_at or datetime.now(UTC)),
                restore_size=decisions.gib_to_bytes(disk.size_gib) if disk.size_gib else None,
                ready=progress.done,
            )
        else:
            info = await self.azure.get_snapshot(target)
            state = SnapshotState(
                handle=handle,
                creation_time_ns=decisions.creation_time_ns(info.created_at or datetime.now(UTC)),
                restore_size=decisions.restore_size_bytes(info.source_volume_size_gib),
                ready=decisions.snapshot_ready(info),
            )
        await self._write_status(body, state)
        return None if state.ready else Requeue()

    # -- deletion ----------------------------------------------------------------

    async def _delete(self, body: Body, *, settled: bool = False) -> Outcome:
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        spec = body["spec"]
        bound = bool((spec.get("volumeSnapshotRef") or {}).get("uid"))
        pre_provisioned = bool(spec["source"].get("snapshotHandle"))
        in_flight = not settled and create_in_flight(body)
        should_delete = (pre_provisioned and not bound) or (
            ANN_BEING_DELETED in annotations and not in_flight
        )
        if not should_delete:
            if FIN_CONTENT_BOUND in (meta.get("finalizers") or []) and in_flight:
                return await self._settle_create(body)
            return None
        if spec.get("deletionPolicy") == "Delete":
            target = await self._snapshot_to_delete(body)
            if target is not None:
                readers = await self._exports_reading(target)
                if readers:
                    await self.recorder.record(
                        body,
                        NORMAL,
                        "WaitingForExport",
                        f"Elastic SAN snapshot {target.arm_id} is deleted once the export(s) reading it "
                        f"finish: {', '.join(readers)}",
                    )
                    return Requeue(EXPORT_WAIT)
                await self._delete_in_azure(target)
                metrics.SNAPSHOTS_DELETED.inc()
        await self.api.remove_finalizer(VOLUME_SNAPSHOT_CONTENT, body, FIN_CONTENT_BOUND)
        return None

    async def _settle_create(self, body: Body) -> Outcome:
        """Finish or abandon the create a deleted content still marks, as the sidecar does.

        Only a snapshot Azure is still creating makes deletion wait (deleting it then could
        leave it behind); a finished one is deleted next, and a create that never reached
        Azure is abandoned. Either way the annotation comes off (a content the operator made has
        none), so deletion proceeds.
        """
        if not _is_ready(body):
            target = await self._snapshot_to_delete(body)
            if isinstance(target, SnapshotId):
                try:
                    info = await self.azure.get_snapshot(target)
                except NotFound:
                    info = None
                if info is not None and not _finished(info):
                    return Requeue()
        await self._set_being_created(body, False)
        return await self._delete(body, settled=True)

    async def _exports_reading(self, target: SnapshotId | DiskSnapshotId) -> list[str]:
        """Unfinished exports copying from ``target``: deleting it now would break their copy."""
        if self.exports is None or not isinstance(target, SnapshotId):
            return []
        if not self._exports_listed:
            # At start-up the exports' watch may not have caught up with the contents' one.
            try:
                listed = await self.api.list(SNAPSHOT_EXPORT)
            except NotFound:
                # A collection's list is 404 only when its CRD is not installed: no export can
                # exist, and the snapshot must not wait on one. Listed again once it is served.
                return []
            for export in listed:
                self.exports.apply("ADDED", export)
            self._exports_listed = True
        readers = []
        for export in self.exports:
            status = export.get("status") or {}
            source = status.get("sourceSnapshotId")
            if not source or status.get("phase") in ("Succeeded", "Failed"):
                continue
            if try_parse(SnapshotId.parse, str(source), self.subscription) != target:
                continue
            meta = export.get("metadata") or {}
            readers.append(f"{meta.get('namespace')}/{meta.get('name')}")
        return sorted(readers)

    async def _snapshot_to_delete(self, body: Body) -> SnapshotId | DiskSnapshotId | None:
        spec = body["spec"]
        handle = (body.get("status") or {}).get("snapshotHandle") or spec["source"].get("snapshotHandle")
        if handle:
            # None: never ours to delete, the import failed on the same handle.
            return try_parse(parse_snapshot_handle, handle, self.subscription)
        uid = (spec.get("volumeSnapshotRef") or {}).get("uid")
        if spec["source"].get("volumeHandle") and uid:
            # A create may have reached Azure before the status was written (a crash in
            # between): the deterministic name finds that snapshot, so it is not orphaned.
            try:
                volume = await self._source_volume(spec["source"]["volumeHandle"])
            except InvalidRequest:
                return None  # the volume never mapped, so no snapshot was ever created
            return volume.volume_group.snapshot(names.snapshot_name(uid))
        return None

    async def _delete_in_azure(self, target: SnapshotId | DiskSnapshotId) -> None:
        try:
            if isinstance(target, DiskSnapshotId):
                await self.azure.delete_disk_snapshot(target)
            else:
                await self.azure.delete_snapshot(target)
        except NotFound:
            return

    # -- status, annotations, errors -----------------------------------------------

    async def _write_status(self, body: Body, state: SnapshotState) -> None:
        current = body.get("status") or {}
        patch: dict[str, Any] = {}
        if not current.get("snapshotHandle"):
            patch["snapshotHandle"] = state.handle
        if not current.get("creationTime"):
            patch["creationTime"] = state.creation_time_ns
        if state.restore_size and not current.get("restoreSize"):
            patch["restoreSize"] = state.restore_size
        if current.get("readyToUse") is not state.ready:
            patch["readyToUse"] = state.ready
        if state.ready and current.get("error"):
            patch["error"] = None
        if not patch:
            return
        updated = await self.api.patch(
            VOLUME_SNAPSHOT_CONTENT, body["metadata"]["name"], {"status": patch}, subresource="status"
        )
        self._remember(updated)
        if state.ready and not current.get("readyToUse"):
            logger.info("VolumeSnapshotContent %s is ready: %s", body["metadata"]["name"], state.handle)

    async def _set_being_created(self, body: Body, present: bool) -> None:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if (ANN_BEING_CREATED in annotations) == present:
            return
        value = "yes" if present else None
        updated = await self.api.patch(
            VOLUME_SNAPSHOT_CONTENT,
            body["metadata"]["name"],
            {"metadata": {"annotations": {ANN_BEING_CREATED: value}}},
        )
        self._remember(updated)
        body["metadata"] = updated.get("metadata", body["metadata"])

    def _remember(self, updated: Body) -> None:
        if updated.get("metadata", {}).get("name"):
            self.contents.apply("MODIFIED", updated)

    async def _failed(self, body: Body, error: SnapshotterError) -> Outcome:
        if error.final:
            metrics.SNAPSHOTS_FAILED.labels(reason=error.reason).inc()
        deleting = bool((body.get("metadata") or {}).get("deletionTimestamp"))
        return await retry.handle(
            self.recorder,
            body,
            error,
            resource=VOLUME_SNAPSHOT_CONTENT.kind,
            write_final=None if deleting else lambda e: self._write_final_error(body, e),
        )

    async def _write_final_error(self, body: Body, error: SnapshotterError) -> None:
        """``status.error`` (final errors only: Velero fails a backup on it at once), then the create is over."""
        current = body.get("status") or {}
        message = bounded(str(error))
        if (current.get("error") or {}).get("message") != message:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {"status": {"readyToUse": False, "error": {"time": stamp, "message": message}}}
            updated = await self.api.patch(
                VOLUME_SNAPSHOT_CONTENT, body["metadata"]["name"], patch, subresource="status"
            )
            self._remember(updated)
            body = updated or body
        await self._set_being_created(body, False)
