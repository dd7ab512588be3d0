"""Every watch of the operator, wired in one thin module.

Handlers only feed watch events into in-memory stores and keyed work
queues; reconcilers in their own modules do the work. Low-level event
handlers cost no Kopf bookkeeping writes (no finalizer, no diff-base, no
progress annotations), so a snapshot costs only the writes the
csi-snapshotter contract itself requires.

The kinds with an event or more per snapshot (VolumeSnapshotContents,
VolumeSnapshots) and the many-object kinds (PersistentVolumes, claims) come
through the operator's own informers (``informer.py``), which hand each event
straight to the same handlers; Kopf watches the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.domain.ports import AzurePort
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.exporter import ExportGuard, ExportReconciler
from elasticsan_snapshotter.kubernetes.informer import Informer
from elasticsan_snapshotter.kubernetes.provisioner import ClaimReconciler, VolumeReleaser
from elasticsan_snapshotter.kubernetes.resources import (
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    SNAPSHOT_EXPORT,
    SNAPSHOT_GROUP,
    STORAGE_CLASS,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.snapshot_watch import SnapshotWatcher
from elasticsan_snapshotter.kubernetes.snapshotter import ContentReconciler
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import WorkQueue
from elasticsan_snapshotter.settings import Settings

logger = logging.getLogger(__name__)


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
    contents: Store = field(default_factory=Store)
    snapshot_classes: Store = field(default_factory=Store)
    storage_classes: Store = field(default_factory=Store)
    claims: Store = field(default_factory=Store)
    exports: Store = field(default_factory=Store)
    volumes: PersistentVolumes | None = None
    queues: dict[str, WorkQueue] = field(default_factory=dict)
    informers: list[Informer] = field(default_factory=list)
    content_reconciler: ContentReconciler | None = None
    snapshot_watcher: SnapshotWatcher | None = None
    claim_reconciler: ClaimReconciler | None = None
    volume_releaser: VolumeReleaser | None = None
    export_reconciler: ExportReconciler | None = None

    def build(self) -> None:
        self.volumes = PersistentVolumes(self.api)
        common: dict[str, Any] = {
            "driver_name": self.settings.driver_name,
            "subscription": self.settings.subscription_id,
            "api": self.api,
            "azure": self.azure,
            "recorder": self.recorder,
        }
        self.content_reconciler = ContentReconciler(
            **common, index=self.index, contents=self.contents, volumes=self.volumes
        )
        self.snapshot_watcher = SnapshotWatcher(
            **common,
            index=self.index,
            snapshot_classes=self.snapshot_classes,
            storage_classes=self.storage_classes,
            volumes=self.volumes,
        )
        self.claim_reconciler = ClaimReconciler(
            **common, claims=self.claims, storage_classes=self.storage_classes
        )
        self.export_reconciler = ExportReconciler(
            **common, exports=self.exports, export_resource_group=self.settings.export_resource_group
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
        concurrency = self.settings.max_concurrency
        self.queues = {
            "contents": WorkQueue("contents", self.content_reconciler.reconcile, workers=concurrency),
            "snapshots": WorkQueue("snapshots", self.snapshot_watcher.reconcile, workers=2, max_delay=60.0),
            "claims": WorkQueue("claims", self.claim_reconciler.reconcile, workers=concurrency),
            "volumes": WorkQueue("volumes", self.volume_releaser.reconcile, workers=2),
            "exports": WorkQueue("exports", self.export_reconciler.reconcile, workers=concurrency),
        }
        metrics.track_unready(self._unready_ages)
        namespaces = list(self.settings.namespaces) or [""]
        watched = [
            (VOLUME_SNAPSHOT_CONTENT, self.on_content, [""]),
            (VOLUME_SNAPSHOT, self.on_snapshot, namespaces),
            (PERSISTENT_VOLUME, self.on_volume, [""]),
            (PERSISTENT_VOLUME_CLAIM, self.on_claim, namespaces),
        ]
        self.informers = [
            Informer(self.api, resource, handler, namespace=namespace)
            for resource, handler, in_namespaces in watched
            for namespace in in_namespaces
        ]

    def start(self) -> None:
        for queue in self.queues.values():
            queue.start()
        for informer in self.informers:
            informer.start()

    # -- informer events ---------------------------------------------------------------

    def on_content(self, event_type: str | None, body: Body) -> None:
        assert self.content_reconciler is not None
        if not self.content_reconciler.is_ours(body):
            return
        key = self.contents.apply(event_type, body)
        queue = self.queues["contents"]
        if event_type == "DELETED":
            queue.forget(key)
            self.recorder.forget(body["metadata"].get("uid", ""))
        else:
            queue.add(key)

    def on_snapshot(self, event_type: str | None, body: Body) -> None:
        assert self.snapshot_watcher is not None
        key = self.snapshot_watcher.snapshots.apply(event_type, body)
        if event_type == "DELETED":
            self.queues["snapshots"].forget(key)
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
        self.snapshot_watcher.claims.apply(event_type, body)
        if not self.claim_reconciler.is_ours(body):
            return
        key = self.claims.apply(event_type, body)
        if event_type == "DELETED":
            self.queues["claims"].forget(key)
        else:
            self.queues["claims"].add(key)

    def _unready_ages(self) -> list[float]:
        ages: list[float] = []
        for body in self.contents:
            if not (body.get("status") or {}).get("readyToUse"):
                age = metrics.creation_age(body)
                ages.append(age if age is not None else 0.0)
        return ages

    async def close(self) -> None:
        for informer in self.informers:
            await informer.stop()
        for queue in self.queues.values():
            await queue.stop()
        await self.azure.close()
        await self.api.close()


def _object(event: kopf.RawEvent) -> Body:
    return cast(Body, event["object"])


def register(registry: kopf.OperatorRegistry, runtime_box: list[Runtime]) -> None:
    """Attach every handler to ``registry``; ``runtime_box[0]`` is filled at start-up."""

    def runtime() -> Runtime:
        return runtime_box[0]

    kopf.on.login(registry=registry)(login)

    snapshots = (SNAPSHOT_GROUP, "v1")

    @kopf.on.event(*snapshots, VOLUME_SNAPSHOT_CLASS.plural, registry=registry)
    async def snapshot_class_event(event: kopf.RawEvent, **_: Any) -> None:
        runtime().snapshot_classes.apply(event.get("type"), _object(event))

    @kopf.on.event(STORAGE_CLASS.group, STORAGE_CLASS.version, STORAGE_CLASS.plural, registry=registry)
    async def storage_class_event(event: kopf.RawEvent, **_: Any) -> None:
        runtime().storage_classes.apply(event.get("type"), _object(event))

    @kopf.on.event(SNAPSHOT_EXPORT.group, SNAPSHOT_EXPORT.version, SNAPSHOT_EXPORT.plural, registry=registry)
    async def export_event(event: kopf.RawEvent, **_: Any) -> None:
        rt = runtime()
        assert rt.export_reconciler is not None
        body = _object(event)
        key = rt.exports.apply(event.get("type"), body)
        if event.get("type") == "DELETED":
            rt.queues["exports"].forget(key)
            rt.recorder.forget(body["metadata"].get("uid", ""))
            await rt.export_reconciler.deleted(body)
        else:
            rt.queues["exports"].add(key)


__all__ = ["Runtime", "login", "register"]
