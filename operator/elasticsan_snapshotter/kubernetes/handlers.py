"""Every watch of the operator, wired in one thin module.

Handlers only feed watch events into in-memory stores and keyed work
queues; reconcilers in their own modules do the work. Low-level event
handlers cost no Kopf bookkeeping writes (no finalizer, no diff-base, no
progress annotations), so a snapshot costs only the writes the
csi-snapshotter contract itself requires.

The kinds with an event or more per snapshot (VolumeSnapshotContents,
VolumeSnapshots), the many-object kinds (PersistentVolumes, claims) and the
classes the reconcilers decide by (VolumeSnapshotClasses, StorageClasses) come
through the operator's own informers (``informer.py``), which hand each event
straight to the same handlers; Kopf watches the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import kopf

from elasticsan_snapshotter import health, metrics
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.domain.freeze import FreezeWindowPort
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.domain.limits import VolumeLimits
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.domain.ports import AzurePort, check_access
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.content_making import (
    content_name,
    is_made,
    snapshot_key,
    snapshot_seen,
    waiting_on_snapshot_controller,
)
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.export_guard import ExportGuard
from elasticsan_snapshotter.kubernetes.exporter import ExportReconciler
from elasticsan_snapshotter.kubernetes.group_freeze import FreezeAgents
from elasticsan_snapshotter.kubernetes.group_members import GroupMemberReconciler
from elasticsan_snapshotter.kubernetes.group_snapshotter import GroupContentReconciler
from elasticsan_snapshotter.kubernetes.informer import Informer
from elasticsan_snapshotter.kubernetes.provisioner import ClaimReconciler
from elasticsan_snapshotter.kubernetes.releaser import VolumeReleaser
from elasticsan_snapshotter.kubernetes.resources import (
    GROUP_SNAPSHOT_GROUP,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    SNAPSHOT_EXPORT,
    SNAPSHOT_SCHEDULE,
    STORAGE_CLASS,
    VOLUME_GROUP_SNAPSHOT,
    VOLUME_GROUP_SNAPSHOT_CLASS,
    VOLUME_GROUP_SNAPSHOT_CONTENT,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.schedule_objects import owner_key
from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler
from elasticsan_snapshotter.kubernetes.snapshot_watch import SnapshotWatcher
from elasticsan_snapshotter.kubernetes.snapshotter import ContentReconciler, has_work
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store, slim_content
from elasticsan_snapshotter.kubernetes.workqueue import WorkQueue
from elasticsan_snapshotter.settings import Settings

logger = logging.getLogger(__name__)

CLASS_KINDS = (VOLUME_SNAPSHOT_CLASS.plural, STORAGE_CLASS.plural)
CLASSES_LISTED_TIMEOUT = 30.0
"""How long the reconcilers wait at start-up for the classes' first state before they start without it."""


def login(**_: Any) -> kopf.ConnectionInfo:
    """In a pod: the service account; elsewhere: the kubeconfig (``KUBECONFIG``)."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig found")
    return info


@dataclass
class Runtime:
    """Everything the handlers share, built once the event loop runs."""

    settings: Settings
    azure: AzurePort
    index: SanIndex
    api: KubeApi
    recorder: EventRecorder
    contents: Store = field(default_factory=lambda: Store(slim_content))
    snapshot_classes: Store = field(default_factory=Store)
    storage_classes: Store = field(default_factory=Store)
    claims: Store = field(default_factory=Store)
    exports: Store = field(default_factory=Store)
    volumes: PersistentVolumes | None = None
    queues: dict[str, WorkQueue] = field(default_factory=dict)
    leading: bool = False
    """Whether this replica runs the reconcilers (always, unless it waits for the Lease)."""
    informers: list[Informer] = field(default_factory=list)
    content_reconciler: ContentReconciler | None = None
    snapshot_watcher: SnapshotWatcher | None = None
    claim_reconciler: ClaimReconciler | None = None
    volume_releaser: VolumeReleaser | None = None
    export_reconciler: ExportReconciler | None = None
    group_contents: Store = field(default_factory=Store)
    group_classes: Store = field(default_factory=Store)
    group_member_contents: Store = field(default_factory=Store)
    group_reconciler: GroupContentReconciler | None = None
    group_member_reconciler: GroupMemberReconciler | None = None
    schedules: Store = field(default_factory=Store)
    schedule_reconciler: ScheduleReconciler | None = None
    freeze_window: FreezeWindowPort | None = None
    freeze_agent_namespace: str = "default"
    _sweep: asyncio.Task[None] | None = None
    _starting: asyncio.Task[None] | None = None

    def build(self) -> None:
        self.volumes = PersistentVolumes(self.api)
        common: dict[str, Any] = {
            "driver_name": self.settings.driver_name,
            "subscription": self.settings.subscription_id,
            "api": self.api,
            "azure": self.azure,
            "recorder": self.recorder,
        }
        made: set[str] = set()
        self.snapshot_watcher = SnapshotWatcher(
            **common,
            index=self.index,
            snapshot_classes=self.snapshot_classes,
            storage_classes=self.storage_classes,
            volumes=self.volumes,
            contents=self.contents if self.settings.create_contents else None,
            made=made,
        )
        self.content_reconciler = ContentReconciler(
            **common,
            index=self.index,
            contents=self.contents,
            volumes=self.volumes,
            exports=self.exports,
            snapshot_classes=self.snapshot_classes,
            group_driver_name=self.settings.group_driver_name,
            snapshots=self.snapshot_watcher.snapshots,
            made=made,
            take_up_timeout=self.settings.content_take_up_timeout,
        )
        self.claim_reconciler = ClaimReconciler(
            **common,
            claims=self.claims,
            storage_classes=self.storage_classes,
            group_driver_name=self.settings.group_driver_name,
            managed_sans=tuple(ElasticSanId.parse(arm_id) for arm_id in self.settings.managed_sans),
        )
        self.export_reconciler = ExportReconciler(
            **common,
            exports=self.exports,
            export_resource_group=self.settings.export_resource_group,
            group_driver_name=self.settings.group_driver_name,
        )
        export_guard = ExportGuard(
            subscription=self.settings.subscription_id,
            api=self.api,
            recorder=self.recorder,
            exports=self.exports,
            contents=self.contents,
            snapshot_classes=self.snapshot_classes,
        )
        self.volume_releaser = VolumeReleaser(
            **common, volumes=self.volumes, storage_classes=self.storage_classes, export_guard=export_guard
        )
        freeze_agents = None
        if self.freeze_window is not None:
            freeze_agents = FreezeAgents(
                api=self.api,
                window=self.freeze_window,
                namespace=self.freeze_agent_namespace,
                selector=self.settings.freeze_agent_selector,
            )
        self.group_reconciler = GroupContentReconciler(
            **common,
            group_driver_name=self.settings.group_driver_name,
            index=self.index,
            group_contents=self.group_contents,
            group_classes=self.group_classes,
            volumes=self.volumes,
            freeze_agents=freeze_agents,
        )
        self.group_member_reconciler = GroupMemberReconciler(
            **common, group_driver_name=self.settings.group_driver_name, members=self.group_member_contents
        )
        self.schedule_reconciler = ScheduleReconciler(
            **common,
            schedules=self.schedules,
            exports=self.exports,
            volumes=self.volumes,
            index=self.index,
            minimum_interval=timedelta(seconds=self.settings.schedule_minimum_interval),
            volume_limits=VolumeLimits(
                per_window=self.settings.snapshots_per_window,
                window=timedelta(seconds=self.settings.snapshot_window),
            ),
        )
        concurrency = self.settings.max_concurrency
        self.queues = {
            "contents": WorkQueue("contents", self.content_reconciler.reconcile, workers=concurrency),
            "snapshots": WorkQueue(
                "snapshots", self.snapshot_watcher.reconcile, workers=concurrency, max_delay=60.0
            ),
            "claims": WorkQueue("claims", self.claim_reconciler.reconcile, workers=concurrency),
            "volumes": WorkQueue("volumes", self.volume_releaser.reconcile, workers=2),
            "exports": WorkQueue("exports", self.export_reconciler.reconcile, workers=concurrency),
            "groups": WorkQueue("groups", self.group_reconciler.reconcile, workers=concurrency),
            "group-members": WorkQueue("group-members", self.group_member_reconciler.reconcile, workers=2),
            "schedules": WorkQueue(
                "schedules", self.schedule_reconciler.reconcile, workers=4, max_delay=60.0
            ),
        }
        self.snapshot_watcher.on_made = self.queues["contents"].add
        metrics.track_unready(self._unready_ages)
        namespaces = list(self.settings.namespaces) or [""]
        watched = [
            (VOLUME_SNAPSHOT_CONTENT, self.on_content, [""]),
            (VOLUME_SNAPSHOT, self.on_snapshot, namespaces),
            (PERSISTENT_VOLUME, self.on_volume, [""]),
            (PERSISTENT_VOLUME_CLAIM, self.on_claim, namespaces),
            (VOLUME_SNAPSHOT_CLASS, self.on_snapshot_class, [""]),
            (STORAGE_CLASS, self.on_storage_class, [""]),
        ]
        self.informers = [
            Informer(self.api, resource, handler, namespace=namespace)
            for resource, handler, in_namespaces in watched
            for namespace in in_namespaces
        ]

    async def check_azure(self) -> None:
        """One authenticated Azure read at start-up, as the CSI controller's Probe makes.

        The token and a TLS connection are then ready before the first snapshot: fetched
        lazily they cost that snapshot a few hundred milliseconds. Refused credentials show
        in the log at once instead of at the first create.
        """
        try:
            await check_access(self.azure, [ElasticSanId.parse(s) for s in self.settings.managed_sans])
        except SnapshotterError as error:
            logger.warning("Azure check at start-up failed: %s: %s", error.reason, error)

    def watch(self) -> None:
        """Fill the stores from the API: on every replica, so a standby takes over warm."""
        for informer in self.informers:
            informer.start()

    # -- informer events ---------------------------------------------------------------

    def on_content(self, event_type: str | None, body: Body) -> None:
        assert self.content_reconciler is not None
        assert self.group_member_reconciler is not None
        if self.group_member_reconciler.is_ours(body):
            self.enqueue("group-members", self.group_member_contents, event_type, body)
        if self.content_reconciler.is_ours(body):
            self.enqueue("contents", self.contents, event_type, body, has_work(body))

    def enqueue(
        self, queue_name: str, store: Store, event_type: str | None, body: Body, work: bool = True
    ) -> None:
        """Apply an event to ``store`` and queue (or forget) its key; ``work=False`` only stores it."""
        key = store.apply(event_type, body)
        queue = self.queues[queue_name]
        if event_type == "DELETED":
            queue.forget(key)
            self.recorder.forget(body["metadata"].get("uid", ""))
        elif work:
            queue.add(key)

    def on_snapshot(self, event_type: str | None, body: Body) -> None:
        assert self.snapshot_watcher is not None
        assert self.schedule_reconciler is not None
        self.wake_schedules([self.schedule_reconciler.snapshot_event(event_type, body)])
        key = self.snapshot_watcher.snapshots.apply(event_type, body)
        if event_type == "DELETED":
            self.queues["snapshots"].forget(key)
            # A content made for it that snapshot-controller never bound is released by us.
            made = self.contents.get(content_name(str(body["metadata"].get("uid"))))
            if made is not None and is_made(made):
                self.queues["contents"].add(made["metadata"]["name"])
        else:
            self.queues["snapshots"].add(key)

    def on_volume(self, event_type: str | None, body: Body) -> None:
        assert self.volumes is not None
        assert self.volume_releaser is not None
        key = self.volumes.apply(event_type, body)
        if event_type != "DELETED" and self.volume_releaser.is_ours(body):
            self.queues["volumes"].add(key)

    def on_claim(self, event_type: str | None, body: Body) -> None:
        assert self.claim_reconciler is not None
        assert self.snapshot_watcher is not None
        assert self.schedule_reconciler is not None
        self.snapshot_watcher.claims.apply(event_type, body)
        self.wake_schedules(list(self.schedule_reconciler.claim_event(event_type, body)))
        if not self.claim_reconciler.is_ours(body):
            return
        key = self.claims.apply(event_type, body)
        if event_type == "DELETED":
            self.queues["claims"].forget(key)
        else:
            self.queues["claims"].add(key)

    def on_snapshot_class(self, event_type: str | None, body: Body) -> None:
        assert self.snapshot_watcher is not None
        name = self.snapshot_classes.apply(event_type, body)
        if event_type != "DELETED":
            # A VolumeSnapshot may have come first (start-up, or applied before its class).
            for key in self.snapshot_watcher.naming_class(name):
                self.queues["snapshots"].add(key)

    def on_storage_class(self, event_type: str | None, body: Body) -> None:
        self.storage_classes.apply(event_type, body)

    def start(self) -> None:
        """Run the reconcilers: at start-up, or once this replica holds the Lease."""
        self.leading = True
        self._starting = asyncio.create_task(self._start_once_classes_listed(), name="start")

    async def _start_once_classes_listed(self) -> None:
        """Start the queues once the classes' first state is in, as client-go controllers wait
        for their caches.

        Only the classes: a missing claim, PV or content is read from the API, but a class
        missing from its store is a decision (not our driver, SnapshotClassMissing, no
        exportBeforeVolumeDelete) that its first state, a few objects, makes right. The many
        contents and PVs are not waited for: that would hold the first snapshot for seconds.
        """
        try:
            await asyncio.wait_for(self._listed(CLASS_KINDS), CLASSES_LISTED_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "VolumeSnapshotClasses and StorageClasses not listed after %.0fs; reconciling without them",
                CLASSES_LISTED_TIMEOUT,
            )
        for queue in self.queues.values():
            queue.start()
        self._sweep = asyncio.create_task(self.look_at_made_contents(), name="made-contents")

    async def look_at_made_contents(self) -> None:
        """Once both watches are current: queue made contents whose VolumeSnapshot is not seen,
        or waits on snapshot-controller.

        A VolumeSnapshot deleted while no replica watched leaves no DELETED event behind, and a
        ready content is not queued at start-up otherwise; the content reconciler asks the API
        before it releases or hands back anything.
        """
        await self._listed((VOLUME_SNAPSHOT_CONTENT.plural, VOLUME_SNAPSHOT.plural))
        assert self.snapshot_watcher is not None
        snapshots = self.snapshot_watcher.snapshots
        for body in self.contents:
            if not is_made(body) or (body.get("metadata") or {}).get("deletionTimestamp"):
                continue
            held = snapshots.get(snapshot_key(body))
            if not snapshot_seen(body, snapshots) or waiting_on_snapshot_controller(body, held):
                self.queues["contents"].add(body["metadata"]["name"])

    async def _listed(self, plurals: tuple[str, ...]) -> None:
        """Until the informers of these kinds have handed over their first state."""
        for informer in self.informers:
            if informer.resource.plural in plurals:
                await informer.synced.wait()

    def wake_schedules(self, keys: list[str | None]) -> None:
        """Objects a schedule made (or may select) changed: look at those schedules again."""
        for key in keys:
            if key and self.schedules.get(key) is not None:
                self.queues["schedules"].add(key)

    def _unready_ages(self) -> list[float]:
        ages: list[float] = []
        for body in self.contents:
            if not (body.get("status") or {}).get("readyToUse"):
                age = metrics.creation_age(body)
                ages.append(age if age is not None else 0.0)
        return ages

    async def close(self) -> None:
        for task in (self._starting, self._sweep):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for informer in self.informers:
            await informer.stop()
        for queue in self.queues.values():
            await queue.stop()
        await self.azure.close()
        await self.api.close()


def _object(event: kopf.RawEvent) -> Body:
    return cast(Body, event["object"])


def _enqueue(rt: Runtime, queue_name: str, store: Store, event: kopf.RawEvent) -> None:
    rt.enqueue(queue_name, store, event.get("type"), _object(event))


def register(registry: kopf.OperatorRegistry, runtime_box: list[Runtime]) -> None:
    """Attach every handler to ``registry``; ``runtime_box[0]`` is filled at start-up."""

    def runtime() -> Runtime:
        return runtime_box[0]

    kopf.on.login(registry=registry)(login)

    @kopf.on.probe(id="credentials", registry=registry)
    async def credentials(**_: Any) -> str:
        # A failing probe fails /healthz, so the pod reports not ready until credentials work.
        failing = health.CREDENTIALS.failing()
        if failing:
            raise kopf.PermanentError("; ".join(f"{k}: {v}" for k, v in sorted(failing.items())))
        return "ok"

    groups = (GROUP_SNAPSHOT_GROUP, "v1")

    @kopf.on.event(*groups, VOLUME_GROUP_SNAPSHOT_CONTENT.plural, registry=registry)
    async def group_content_event(event: kopf.RawEvent, **_: Any) -> None:
        rt = runtime()
        assert rt.group_reconciler is not None
        if rt.group_reconciler.is_ours(_object(event)):
            _enqueue(rt, "groups", rt.group_contents, event)

    @kopf.on.event(*groups, VOLUME_GROUP_SNAPSHOT.plural, registry=registry)
    async def group_snapshot_event(event: kopf.RawEvent, **_: Any) -> None:
        rt = runtime()
        assert rt.schedule_reconciler is not None
        rt.wake_schedules([rt.schedule_reconciler.group_event(event.get("type"), _object(event))])

    @kopf.on.event(*groups, VOLUME_GROUP_SNAPSHOT_CLASS.plural, registry=registry)
    async def group_class_event(event: kopf.RawEvent, **_: Any) -> None:
        runtime().group_classes.apply(event.get("type"), _object(event))

    @kopf.on.event(SNAPSHOT_EXPORT.group, SNAPSHOT_EXPORT.version, SNAPSHOT_EXPORT.plural, registry=registry)
    async def export_event(event: kopf.RawEvent, **_: Any) -> None:
        rt = runtime()
        assert rt.export_reconciler is not None
        body = _object(event)
        key = rt.exports.apply(event.get("type"), body)
        rt.wake_schedules([owner_key(body)])
        if event.get("type") == "DELETED":
            rt.queues["exports"].forget(key)
            rt.recorder.forget(body["metadata"].get("uid", ""))
            if rt.leading:  # a standby only watches
                await rt.export_reconciler.deleted(body)
        else:
            rt.queues["exports"].add(key)

    @kopf.on.event(
        SNAPSHOT_SCHEDULE.group, SNAPSHOT_SCHEDULE.version, SNAPSHOT_SCHEDULE.plural, registry=registry
    )
    async def schedule_event(event: kopf.RawEvent, **_: Any) -> None:
        rt = runtime()
        body = _object(event)
        key = rt.schedules.apply(event.get("type"), body)
        if event.get("type") == "DELETED":
            rt.queues["schedules"].forget(key)
            rt.recorder.forget(body["metadata"].get("uid", ""))
        else:
            rt.queues["schedules"].add(key)


__all__ = ["Runtime", "login", "register"]
