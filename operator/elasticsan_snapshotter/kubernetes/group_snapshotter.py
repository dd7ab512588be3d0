"""The group snapshotter role: VolumeGroupSnapshotContents of the group driver, as csi-snapshotter would.

snapshot-controller names the group driver after the PVs' CSI driver (``iscsi.csi.k8s.io``
by default), so the operator handles group contents of that driver, one setting away.
Contract (external-snapshotter v8 sidecar, groups): the ``volumegroupsnapshot-being-created``
annotation is set before the first Azure PUT and removed once the group is published or
cleaned up; the handle, ``readyToUse``, ``creationTime`` and the full
``volumeSnapshotInfoList`` go out in ONE status write (snapshot-controller creates the member
VolumeSnapshots and contents from it at once); ``status.error`` is written only for final
errors, transient trouble is an Event; deletion happens only on ``volumegroupsnapshot-being-
deleted`` (or an unbound pre-provisioned content), in Azure only for ``deletionPolicy: Delete``.

Members are cut in parallel under deterministic names (``domain.groups``), so a retry or a
restart adopts what was cut (the adapter GETs before it PUTs). A member that fails for good
fails the group, and every member snapshot is deleted again, one at a time: no half group
survives silently. A class asking for ``FilesystemConsistent`` cuts inside a freeze window
(``group_freeze``): only members cut under that window count, so an attempt starts by deleting
any an earlier one left, and the level published is the one proven.

At about 500 lines this module is longer than the others on purpose: it is one state machine
(create, publish, import, delete) whose steps share the member list, the annotations and the
failure path; the freeze window (``group_freeze``) and the member contents (``group_members``)
are already apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import decisions, freeze, groups
from elasticsan_snapshotter.domain.errors import InvalidRequest, NotFound, SnapshotterError, Transient
from elasticsan_snapshotter.domain.identity import SnapshotId, VolumeId
from elasticsan_snapshotter.domain.mapping import SanIndex, volume_of
from elasticsan_snapshotter.domain.ports import SnapshotInfo
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING
from elasticsan_snapshotter.kubernetes.group_freeze import (
    FreezeAgents,
    MemberVolume,
    held_off,
    level_meaning,
    member_volume,
    recorded_step,
    retry_record,
)
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_GROUP_BEING_CREATED,
    ANN_GROUP_BEING_DELETED,
    ANN_GROUP_CONSISTENCY,
    ANN_GROUP_CUT_WINDOW,
    ANN_GROUP_FREEZE_LEASE,
    ANN_GROUP_FREEZE_RETRY,
    ANN_GROUP_FREEZE_WINDOW,
    FIN_GROUP_CONTENT_BOUND,
    VOLUME_GROUP_SNAPSHOT,
    VOLUME_GROUP_SNAPSHOT_CLASS,
    VOLUME_GROUP_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

logger = logging.getLogger(__name__)

FINAL_RECHECK = 300.0
"""A pre-provisioned or deleting group with a final error is looked at again this often."""


@dataclass(frozen=True)
class Member:
    volume_handle: str
    """As the group content names it: the PersistentVolume's ``spec.csi.volumeHandle``."""
    snapshot: SnapshotId
    volume: VolumeId
    source: MemberVolume
    """Its PV and claim, to find the pods that mount it."""


Window = freeze.WindowResult[list[SnapshotInfo]]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(kw_only=True, eq=False)
class GroupContentReconciler(Reconciler):
    group_driver_name: str
    index: SanIndex
    group_contents: Store
    group_classes: Store
    volumes: PersistentVolumes
    freeze_agents: FreezeAgents | None = None
    """None: this operator cannot freeze, so FilesystemConsistent classes are refused."""

    def is_ours(self, body: Body) -> bool:
        spec = body.get("spec") or {}
        source = spec.get("source") or {}
        return spec.get("driver") == self.group_driver_name and bool(
            source.get("volumeHandles") or source.get("groupSnapshotHandles")
        )

    async def reconcile(self, name: str) -> Outcome:
        body = self.group_contents.get(name)
        if body is None or not self.is_ours(body):
            return None
        try:
            interrupted = await self._release_recorded(body)
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                return await self._delete(body)
            if body["spec"]["source"].get("volumeHandles"):
                return await self._create(body, interrupted)
            return await self._import(body)
        except SnapshotterError as exc:
            return await self._failed(body, exc)

    # -- dynamic groups ------------------------------------------------------------------------

    async def _create(self, body: Body, interrupted: freeze.WindowStep | None) -> Outcome:
        meta, spec = body["metadata"], body["spec"]
        status = body.get("status") or {}
        annotations = meta.get("annotations") or {}
        if status.get("volumeGroupSnapshotHandle"):
            if ANN_GROUP_BEING_CREATED in annotations:  # a restart between the status write and this
                await self._annotate(body, {ANN_GROUP_BEING_CREATED: None})
            return None
        if status.get("error"):
            if ANN_GROUP_BEING_CREATED in annotations:
                await self._abort(body)  # the clean-up of a failed cut was interrupted
            return None  # a final error stands: a new VolumeGroupSnapshot takes a new group
        if not (spec.get("volumeGroupSnapshotRef") or {}).get("uid"):
            return None  # snapshot-controller binds dynamic group contents; nothing to do yet
        policy = (await self._class_parameters(spec)).freeze
        handle = groups.group_handle(meta["uid"])
        members = await self._members(handle, spec["source"]["volumeHandles"])
        started = time.monotonic()
        if policy.freezes:
            if self.freeze_agents is None:
                raise InvalidRequest(
                    f"{freeze.FILESYSTEM_CONSISTENT} needs freeze agents; this operator has none"
                )
            wait = held_off(body, time.time())
            if wait > 0:
                return Requeue(wait)
            try:
                window = await self.freeze_agents.frozen_cut(
                    handle,
                    policy,
                    [m.source for m in members],
                    interrupted,
                    record=lambda value: self._annotate(body, {ANN_GROUP_FREEZE_LEASE: value}),
                    reserve=lambda fresh: self._reserve(body, handle, members, fresh=fresh),
                    cut=lambda: self._cut(members),
                    discard=lambda: self._delete_members(members),
                )
            except SnapshotterError as exc:
                if exc.retryable:
                    await self._annotate(body, {ANN_GROUP_FREEZE_RETRY: retry_record(body, exc, time.time())})
                raise
        else:
            await self._reserve(body, handle, members)
            window = Window(freeze.outcome(policy, None), await self._cut(members), None, 0.0)
        await self._publish(body, handle, members, window, policy)
        logger.info(
            "group %s of VolumeGroupSnapshotContent %s: %d members ready in %.1fs",
            handle,
            meta["name"],
            len(members),
            time.monotonic() - started,
        )
        return None

    async def _class_parameters(self, spec: Body) -> groups.GroupClassParameters:
        name = spec.get("volumeGroupSnapshotClassName")
        if not name:
            return groups.GroupClassParameters()
        found = self.group_classes.get(name) or await self.api.get(VOLUME_GROUP_SNAPSHOT_CLASS, name)
        if found is None:
            raise InvalidRequest(f"VolumeGroupSnapshotClass {name} does not exist")
        params = {str(k): str(v) for k, v in (found.get("parameters") or {}).items()}
        try:
            return groups.parse_group_class_parameters(params)
        except InvalidRequest as exc:
            raise InvalidRequest(f"VolumeGroupSnapshotClass {name}: {exc}") from None

    async def _members(self, handle: str, volume_handles: list[str]) -> list[Member]:
        members: list[Member] = []
        seen: dict[VolumeId, str] = {}
        for volume_handle in volume_handles:
            pv = await self.volumes.by_volume_handle(volume_handle)
            if pv is None:
                raise InvalidRequest(f"no PersistentVolume has spec.csi.volumeHandle {volume_handle!r}")
            volume = await volume_of(pv, index=self.index, default_subscription=self.subscription)
            if volume in seen:
                raise InvalidRequest(
                    f"volume handles {seen[volume]!r} and {volume_handle!r} are the same Elastic SAN "
                    f"volume {volume.arm_id}"
                )
            seen[volume] = volume_handle
            snapshot = groups.member_snapshot(handle, volume)
            members.append(Member(volume_handle, snapshot, volume, member_volume(volume_handle, pv)))
        return members

    async def _release_recorded(self, body: Body) -> freeze.WindowStep | None:
        """A lease an earlier attempt recorded and may still hold (the operator stopped): thaw it first.

        The record stays until a new window replaces it or the group is published, so that a
        transient error in between cannot make the restarted operator forget the attempt."""
        step = recorded_step(body)
        if step is not None and self.freeze_agents is not None:
            await self.freeze_agents.release(step)  # idempotent: a thawed lease stays thawed
        return step

    async def _reserve(self, body: Body, handle: str, members: list[Member], *, fresh: bool = False) -> None:
        """The budget for every member before any PUT (or freeze); ``fresh``: delete members cut earlier,
        outside this window, so that every member of the set is cut within it."""
        stale = await self._check_budget(handle, members, fresh=fresh)
        for member in stale:
            await self._delete_snapshot(member.snapshot)
        await self._annotate(body, {ANN_GROUP_BEING_CREATED: "yes"})

    async def _check_budget(self, handle: str, members: list[Member], *, fresh: bool = False) -> list[Member]:
        listed = await asyncio.gather(
            *(self.azure.list_snapshots(m.volume.volume_group, m.volume.name) for m in members)
        )
        budgets = [
            groups.member_budget(
                handle, m.volume, [(s.id, s.created_at) for s in decisions.snapshots_of(m.volume, snaps)]
            )
            for m, snaps in zip(members, listed, strict=True)
        ]
        stale = [m for m, b in zip(members, budgets, strict=True) if fresh and b.cut]
        if fresh:
            budgets = [dataclasses.replace(b, cut=False) for b in budgets]
        groups.check_group_budget(budgets, time.time())
        return stale

    async def _cut(self, members: list[Member]) -> list[SnapshotInfo]:
        results = await asyncio.gather(*(self._cut_one(m) for m in members), return_exceptions=True)
        infos: list[SnapshotInfo] = []
        trouble: list[tuple[Member, SnapshotterError]] = []
        for member, result in zip(members, results, strict=True):
            if isinstance(result, SnapshotInfo):
                infos.append(result)
            elif isinstance(result, SnapshotterError):
                trouble.append((member, result))
            else:
                raise result
        final = [(m, e) for m, e in trouble if e.final]
        if final:
            member, error = final[0]
            raise groups.GroupMemberFailed(
                f"member {member.volume_handle} (Elastic SAN volume {member.volume.arm_id}) failed for good: "
                f"{error}. The group is failed and its member snapshots are deleted again, so no partial "
                "group is left; delete the VolumeGroupSnapshot and take a new one"
            )
        if trouble:
            member, error = trouble[0]
            raise Transient(
                f"member {member.volume_handle}: {error}; the {len(infos)} member(s) cut so far are kept "
                "and adopted when the group is tried again",
                retry_after=max((e.retry_after or 0.0) for _, e in trouble) or None,
            )
        return infos

    async def _cut_one(self, member: Member) -> SnapshotInfo:
        info = await self.azure.create_snapshot(member.snapshot, member.volume)
        if not decisions.snapshot_ready(info):  # raises SnapshotFailed when Azure says Failed
            raise Transient(f"snapshot {member.snapshot.arm_id} is {info.provisioning_state}")
        return info

    async def _publish(
        self, body: Body, handle: str, members: list[Member], window: Window, policy: freeze.FreezePolicy
    ) -> None:
        infos, level = window.cut, window.outcome.level
        now = datetime.now(UTC)
        accepted = [info.created_at or now for info in infos]
        cut_window = groups.cut_window_seconds(accepted)
        entries: list[dict[str, Any]] = []
        for member, info, at in zip(members, infos, accepted, strict=True):
            entry: dict[str, Any] = {
                "volumeHandle": member.volume_handle,
                "snapshotHandle": member.snapshot.handle(self.subscription),
                "creationTime": decisions.creation_time_ns(at),
                "readyToUse": True,
            }
            size = decisions.restore_size_bytes(info.source_volume_size_gib)
            if size:
                entry["restoreSize"] = size
            entries.append(entry)
        status = {
            "volumeGroupSnapshotHandle": handle,
            "readyToUse": True,
            "creationTime": _stamp(min(accepted)),
            "volumeSnapshotInfoList": entries,
            "error": None,
        }
        name = body["metadata"]["name"]
        self._remember(
            await self.api.patch(
                VOLUME_GROUP_SNAPSHOT_CONTENT, name, {"status": status}, subresource="status"
            )
        )
        await self._annotate(
            body,
            {
                ANN_GROUP_BEING_CREATED: None,
                ANN_GROUP_CONSISTENCY: level,
                ANN_GROUP_CUT_WINDOW: f"{cut_window:.3f}",
                ANN_GROUP_FREEZE_WINDOW: f"{window.frozen_seconds:.3f}" if window.frozen_seconds else None,
                ANN_GROUP_FREEZE_LEASE: None,
                ANN_GROUP_FREEZE_RETRY: None,
            },
        )
        metrics.GROUP_SNAPSHOTS.labels(result="Ready").inc()
        metrics.GROUP_SNAPSHOT_LEVELS.labels(level=level).inc()
        metrics.GROUP_MEMBERS.observe(len(members))
        metrics.GROUP_CUT_WINDOW.observe(cut_window)
        target = await self._group_snapshot(body) or body
        if target is not body:
            await self._annotate_group_snapshot(target, level)
        if policy.freezes and level != freeze.FILESYSTEM_CONSISTENT:
            await self.recorder.record(target, WARNING, "FreezeNotProven", window.outcome.message)
        await self.recorder.record(
            target,
            NORMAL,
            "GroupSnapshotCut",
            f"{len(members)} member snapshot(s) of group {handle} are ready; consistency level {level}: "
            + level_meaning(level, window.frozen_seconds, cut_window),
        )

    async def _annotate_group_snapshot(self, vgs: Body, level: str) -> None:
        """The level on the VolumeGroupSnapshot too, where users and backup tools look; best effort."""
        meta = vgs["metadata"]
        if (meta.get("annotations") or {}).get(ANN_GROUP_CONSISTENCY) == level:
            return
        patch = {"metadata": {"annotations": {ANN_GROUP_CONSISTENCY: level}}}
        try:
            await self.api.patch(VOLUME_GROUP_SNAPSHOT, meta["name"], patch, meta["namespace"])
        except SnapshotterError as exc:
            logger.warning(
                "VolumeGroupSnapshot %s/%s: level not annotated: %s", meta["namespace"], meta["name"], exc
            )

    # -- pre-provisioned groups ----------------------------------------------------------------

    async def _import(self, body: Body) -> Outcome:
        source = body["spec"]["source"]["groupSnapshotHandles"]
        group = str(source.get("volumeGroupSnapshotHandle") or "")
        status = body.get("status") or {}
        if status.get("readyToUse") and status.get("volumeGroupSnapshotHandle") == group:
            return None
        members = [
            SnapshotId.parse(str(h), self.subscription) for h in source.get("volumeSnapshotHandles") or []
        ]
        groups.check_imported_group(group, members)
        results = await asyncio.gather(*(self.azure.get_snapshot(m) for m in members), return_exceptions=True)
        infos: list[SnapshotInfo] = []
        for member, result in zip(members, results, strict=True):
            if isinstance(result, NotFound):
                raise NotFound(f"member snapshot {member.arm_id} of imported group {group} does not exist")
            if isinstance(result, BaseException):
                raise result
            infos.append(result)
        ready = all(decisions.snapshot_ready(info) for info in infos)
        created = [info.created_at or datetime.now(UTC) for info in infos]
        patch = {
            "volumeGroupSnapshotHandle": group,
            "readyToUse": ready,
            "creationTime": _stamp(min(created)),
            "error": None,
        }
        self._remember(
            await self.api.patch(
                VOLUME_GROUP_SNAPSHOT_CONTENT,
                body["metadata"]["name"],
                {"status": patch},
                subresource="status",
            )
        )
        return None if ready else Requeue()

    # -- deletion ------------------------------------------------------------------------------

    async def _delete(self, body: Body) -> Outcome:
        meta, spec = body["metadata"], body["spec"]
        pre_provisioned = bool(spec["source"].get("groupSnapshotHandles"))
        if ANN_GROUP_BEING_CREATED in (meta.get("annotations") or {}) and not pre_provisioned:
            # A cut that was never published: its members exist only in Azure, nothing to retain.
            await self._abort(body)
        annotations = body["metadata"].get("annotations") or {}
        bound = bool((spec.get("volumeGroupSnapshotRef") or {}).get("uid"))
        if not ((pre_provisioned and not bound) or ANN_GROUP_BEING_DELETED in annotations):
            return None
        status = body.get("status") or {}
        if spec.get("deletionPolicy") == "Delete" and status.get("volumeGroupSnapshotHandle"):
            for snapshot in self._published_members(body):
                await self._delete_snapshot(snapshot)  # one at a time: Elastic SAN deletes serially
            cleared = {
                "volumeGroupSnapshotHandle": None,
                "readyToUse": None,
                "creationTime": None,
                "error": None,
            }
            self._remember(
                await self.api.patch(
                    VOLUME_GROUP_SNAPSHOT_CONTENT, meta["name"], {"status": cleared}, subresource="status"
                )
            )
        await self.api.remove_finalizer(VOLUME_GROUP_SNAPSHOT_CONTENT, body, FIN_GROUP_CONTENT_BOUND)
        return None

    def _published_members(self, body: Body) -> list[SnapshotId]:
        status = body.get("status") or {}
        handles = [e.get("snapshotHandle") for e in status.get("volumeSnapshotInfoList") or []]
        if not handles:
            source = body["spec"]["source"].get("groupSnapshotHandles") or {}
            handles = list(source.get("volumeSnapshotHandles") or [])
        found: list[SnapshotId] = []
        for handle in handles:
            try:
                found.append(SnapshotId.parse(str(handle), self.subscription))
            except InvalidRequest:
                continue  # never a snapshot of ours
        return found

    async def _abort(self, body: Body) -> None:
        """Delete every member a cut may have made, found by the handle alone, then drop the annotation."""
        handle = groups.group_handle(body["metadata"]["uid"])
        for san in sorted(self.index.managed, key=lambda s: s.arm_id.lower()):
            try:
                volume_groups = await self.azure.list_volume_groups(san)
            except NotFound:
                continue
            for volume_group in volume_groups:
                for snapshot in await self.azure.list_snapshots(volume_group):
                    if groups.is_member(handle, snapshot.id):
                        await self._delete_snapshot(snapshot.id)
        await self._annotate(body, {ANN_GROUP_BEING_CREATED: None})

    async def _delete_members(self, members: list[Member]) -> None:
        for member in members:  # one at a time: Elastic SAN deletes serially
            await self._delete_snapshot(member.snapshot)

    async def _delete_snapshot(self, snapshot: SnapshotId) -> None:
        try:
            await self.azure.delete_snapshot(snapshot)
        except NotFound:
            return
        metrics.SNAPSHOTS_DELETED.inc()

    # -- status, annotations, errors -------------------------------------------------------------

    async def _annotate(self, body: Body, annotations: dict[str, str | None]) -> None:
        current = (body.get("metadata") or {}).get("annotations") or {}
        if all(current.get(k) == v for k, v in annotations.items()):
            return
        updated = await self.api.patch(
            VOLUME_GROUP_SNAPSHOT_CONTENT,
            body["metadata"]["name"],
            {"metadata": {"annotations": annotations}},
        )
        self._remember(updated)
        body["metadata"] = updated.get("metadata", body["metadata"])

    def _remember(self, updated: Body) -> None:
        if updated.get("metadata", {}).get("name"):
            self.group_contents.apply("MODIFIED", updated)

    async def _group_snapshot(self, body: Body) -> Body | None:
        ref = body["spec"].get("volumeGroupSnapshotRef") or {}
        if not (ref.get("name") and ref.get("namespace")):
            return None
        try:
            found = await self.api.get(VOLUME_GROUP_SNAPSHOT, ref["name"], ref["namespace"])
        except SnapshotterError:
            return None  # Events are best effort; the content gets it instead
        if found is None or (ref.get("uid") and found["metadata"].get("uid") != ref["uid"]):
            return None
        return found

    async def _failed(self, body: Body, error: SnapshotterError) -> Outcome:
        await self.recorder.error(await self._group_snapshot(body) or body, error)
        if error.retryable:
            return Requeue(error.retry_after) if error.retry_after else Requeue()
        metrics.GROUP_SNAPSHOTS.labels(result=error.reason).inc()
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Requeue(FINAL_RECHECK)
        current = body.get("status") or {}
        if (current.get("error") or {}).get("message") != str(error):
            stamp = _stamp(datetime.now(UTC))
            patch = {"status": {"readyToUse": False, "error": {"time": stamp, "message": str(error)}}}
            self._remember(
                await self.api.patch(VOLUME_GROUP_SNAPSHOT_CONTENT, meta["name"], patch, subresource="status")
            )
        if ANN_GROUP_BEING_CREATED in (meta.get("annotations") or {}):
            try:
                await self._abort(body)
            except SnapshotterError as exc:
                await self.recorder.error(body, exc)
                return Requeue(exc.retry_after) if exc.retryable else Requeue(FINAL_RECHECK)
        return Requeue(FINAL_RECHECK) if body["spec"]["source"].get("groupSnapshotHandles") else None
