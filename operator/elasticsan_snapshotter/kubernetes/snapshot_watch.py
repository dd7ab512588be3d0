"""VolumeSnapshots of our driver: explain early why a snapshot cannot start, or start it.

snapshot-controller waits silently in several situations that users then
read as "stuck". Each of them gets one Warning Event on the VolumeSnapshot
that says what is wrong and what to do. A snapshot that can start gets its
VolumeSnapshotContent made at once (content_making.py), unless that is turned off.

Claims, classes and volumes come from watch-fed stores, so a VolumeSnapshot
event costs no API read; the API is asked only about what no watch has shown yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from elasticsan_snapshotter.domain.errors import AlreadyExists, SnapshotterError
from elasticsan_snapshotter.domain.mapping import SanIndex, volume_of
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.content_making import content_name, dynamic_content
from elasticsan_snapshotter.kubernetes.events import WARNING
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ISCSI_DRIVER,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    STORAGE_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
    Resource,
)
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store, object_key
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

PENDING_RECHECK = 10.0
PROBLEM_RECHECK = 60.0


def _slim_snapshot(body: Body) -> Body:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "ownerReferences", "deletionTimestamp")
            if k in meta
        },
        "spec": body.get("spec") or {},
        "status": {
            k: v
            for k, v in (body.get("status") or {}).items()
            if k in ("readyToUse", "boundVolumeSnapshotContentName")
        },
    }


def _slim_claim(body: Body) -> Body:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp")
            if k in meta
        },
        "spec": {k: spec[k] for k in ("storageClassName", "volumeName") if k in spec},
        "status": {k: v for k, v in (body.get("status") or {}).items() if k == "phase"},
    }


def _group_member(vs: Body) -> bool:
    """Members of a VolumeGroupSnapshot have no class by design; the group explains itself."""
    owners = (vs.get("metadata") or {}).get("ownerReferences") or []
    return any(owner.get("kind") == "VolumeGroupSnapshot" for owner in owners)


@dataclass(kw_only=True, eq=False)
class SnapshotWatcher(Reconciler):
    index: SanIndex
    snapshot_classes: Store
    storage_classes: Store
    volumes: PersistentVolumes
    snapshots: Store = field(init=False, default_factory=lambda: Store(_slim_snapshot))
    claims: Store = field(init=False, default_factory=lambda: Store(_slim_claim))
    """Every PersistentVolumeClaim (a snapshot's source may be any claim), slimmed."""
    contents: Store | None = None
    """The contents of our driver; with it, a snapshot that can start gets its content made here."""
    made: set[str] = field(default_factory=set)
    """Contents this process made and has not yet asked Azure about: no earlier create can exist."""
    on_made: Callable[[str], None] | None = None
    """Called with the name of a content made here, or found made by snapshot-controller before
    the watch showed it: queued at once, not behind its watch event (at start-up that event comes
    after the first state of every other content)."""

    async def _held_or_read(
        self, store: Store, resource: Resource, name: str, namespace: str = ""
    ) -> Body | None:
        """From the watch's store or, not seen on the watch yet (start-up, or a snapshot of a
        claim still to come), one read, kept in the store."""
        found = store.get(f"{namespace}/{name}" if namespace else name)
        if found is None:
            found = await self.api.get(resource, name, namespace)
            if found is not None:
                store.apply("ADDED", found)
        return found

    def naming_class(self, class_name: str) -> list[str]:
        """The unready VolumeSnapshots that name ``class_name``: to look at again once it is seen."""
        return [
            object_key(vs)
            for vs in self.snapshots
            if (vs.get("spec") or {}).get("volumeSnapshotClassName") == class_name
            and not (vs.get("status") or {}).get("readyToUse")
        ]

    async def reconcile(self, key: str) -> Outcome:
        vs = self.snapshots.get(key)
        if vs is None or (vs.get("status") or {}).get("readyToUse") or _group_member(vs):
            return None
        spec = vs.get("spec") or {}
        claim_name = (spec.get("source") or {}).get("persistentVolumeClaimName")
        if not claim_name:
            return None  # pre-provisioned: nothing to explain here
        namespace = vs["metadata"]["namespace"]
        class_name = spec.get("volumeSnapshotClassName")
        claim = await self._held_or_read(self.claims, PERSISTENT_VOLUME_CLAIM, claim_name, namespace)
        if class_name is None:
            return await self._without_class(vs, claim)
        snapshot_class = self.snapshot_classes.get(class_name)
        if snapshot_class is None:
            if claim is not None and await self._claim_is_ours(claim):
                return await self._warn(
                    vs,
                    "SnapshotClassMissing",
                    f"VolumeSnapshotClass {class_name} does not exist; create it with driver "
                    f"{self.driver_name} or name an existing class of that driver",
                )
            return None
        if snapshot_class.get("driver") != self.driver_name:
            return None
        if claim is None:
            return await self._warn(
                vs,
                "SourceClaimMissing",
                f"PersistentVolumeClaim {namespace}/{claim_name} does not exist; the snapshot waits for it",
            )
        phase = (claim.get("status") or {}).get("phase")
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if phase != "Bound" or not volume_name:
            await self._warn(
                vs,
                "SourceClaimNotBound",
                f"PersistentVolumeClaim {namespace}/{claim_name} is {phase or 'not bound'}; "
                "the snapshot starts once the claim is Bound to a PersistentVolume",
            )
            return Requeue(PENDING_RECHECK)
        pv = await self._held_or_read(self.volumes, PERSISTENT_VOLUME, volume_name)
        if pv is None:
            return Requeue(PENDING_RECHECK)
        if not (pv.get("spec") or {}).get("csi"):
            return await self._warn(
                vs,
                "SourceVolumeNotCSI",
                f"PersistentVolume {volume_name} is not a CSI volume, and snapshot-controller only "
                f"snapshots CSI volumes; describe it with spec.csi (driver {ISCSI_DRIVER}) instead "
                "of an in-tree iscsi source",
            )
        try:
            await volume_of(pv, index=self.index, default_subscription=self.subscription)
        except SnapshotterError as exc:
            if exc.retryable:
                return Requeue(exc.retry_after)  # not known yet (Azure busy, index refreshing): look again
            await self.recorder.record(vs, WARNING, "SourceVolumeNotMapped", str(exc))
            return Requeue(PROBLEM_RECHECK)
        await self._make_content(vs, snapshot_class, claim, pv)
        return None

    async def _make_content(self, vs: Body, snapshot_class: Body, claim: Body, pv: Body) -> None:
        if self.contents is None:
            return
        body = dynamic_content(vs, snapshot_class, claim, pv)
        if body is None or self.contents.get(content_name(vs["metadata"]["uid"])) is not None:
            return
        name = body["metadata"]["name"]
        # Before the create: its watch event may be handled before this coroutine resumes.
        self.made.add(name)
        try:
            created = await self.api.create(VOLUME_SNAPSHOT_CONTENT, body)
        except AlreadyExists:
            # snapshot-controller made it first: its content has no annotation, an ordinary one.
            # Not in the store yet means the watch is behind (start-up): read it and queue it.
            self.made.discard(name)
            if self.contents.get(name) is None:
                found = await self.api.get(VOLUME_SNAPSHOT_CONTENT, name)
                if found is not None and self.contents.get(name) is None:
                    self.contents.apply("ADDED", found)
                    if self.on_made is not None:
                        self.on_made(name)
            return
        except BaseException:
            self.made.discard(name)
            raise
        self.contents.apply("ADDED", created)
        if self.on_made is not None:
            self.on_made(name)

    async def _without_class(self, vs: Body, claim: Body | None) -> Outcome:
        if claim is not None and await self._claim_is_ours(claim):
            return await self._warn(
                vs,
                "SnapshotClassRequired",
                "the VolumeSnapshot names no VolumeSnapshotClass; snapshot-controller picks a default "
                f"class only when its driver equals the volume's CSI driver ({ISCSI_DRIVER}), so name a "
                f"VolumeSnapshotClass with driver {self.driver_name} in spec.volumeSnapshotClassName",
            )
        return None

    async def _claim_is_ours(self, claim: Body) -> bool:
        class_name = (claim.get("spec") or {}).get("storageClassName")
        if not class_name:
            return False
        storage_class = self.storage_classes.get(class_name) or await self.api.get(STORAGE_CLASS, class_name)
        return bool(storage_class and storage_class.get("provisioner") == self.driver_name)

    async def _warn(self, vs: Body, reason: str, message: str) -> Outcome:
        await self.recorder.record(vs, WARNING, reason, message)
        return Requeue(PROBLEM_RECHECK)
