"""The provisioner role: Elastic SAN volumes for claims (their deletion is in ``releaser``).

Claims that kube-controller-manager hands to our driver (annotation
``volume.kubernetes.io/storage-provisioner``) get a new Elastic SAN volume,
empty or restored from a VolumeSnapshot, and a PersistentVolume for
``iscsi.csi.k8s.io`` that points at it; kube-controller-manager then binds
them. A released volume of ours with reclaim policy Delete is deleted in
Azure, but never silently together with its snapshots.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import decisions, names, parameters, provisioning
from elasticsan_snapshotter.domain.errors import InvalidRequest, NotFound, SnapshotterError
from elasticsan_snapshotter.domain.groups import GROUP_DRIVER_NAME
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeId, parse_snapshot_handle
from elasticsan_snapshotter.domain.mapping import iscsi_volume_attributes
from elasticsan_snapshotter.domain.ports import VolumeInfo, VolumeSource
from elasticsan_snapshotter.kubernetes import retry
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.content_routing import imported_snapshot, is_group_member
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING
from elasticsan_snapshotter.kubernetes.reconciler import Reconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_PROVISIONED_BY,
    ANN_PROVISIONING_VOLUME,
    ANN_STORAGE_PROVISIONER,
    ANN_STORAGE_PROVISIONER_BETA,
    ANN_VOLUME_ID,
    FIN_CLAIM_PROVISIONING,
    FIN_VOLUME,
    ISCSI_DRIVER,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    SNAPSHOT_GROUP,
    STORAGE_CLASS,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.stores import Store
from elasticsan_snapshotter.kubernetes.workqueue import Outcome

logger = logging.getLogger(__name__)

WAIT_RECHECK = 5.0


class NotYet(retry.Waiting):
    """A precondition that other controllers will fulfil (a snapshot not ready yet): wait, quietly."""

    reason = "WaitingForSnapshot"
    default_retry_after = WAIT_RECHECK


def class_parameters(storage_class: Body) -> parameters.StorageClassParameters:
    """The StorageClass's parameters, parsed by the one parser the CSI controller uses too."""
    name = (storage_class.get("metadata") or {}).get("name", "")
    return parameters.parse_storage_class(storage_class.get("parameters"), f"StorageClass {name}")


@dataclass(kw_only=True, eq=False)
class ClaimReconciler(Reconciler):
    claims: Store
    storage_classes: Store
    group_driver_name: str = GROUP_DRIVER_NAME
    managed_sans: Sequence[ElasticSanId] = ()
    """Where a class naming no Elastic SAN puts its volumes (the first), and the SANs named by name."""

    def is_ours(self, claim: Body) -> bool:
        annotations = (claim.get("metadata") or {}).get("annotations") or {}
        provisioner = annotations.get(ANN_STORAGE_PROVISIONER) or annotations.get(
            ANN_STORAGE_PROVISIONER_BETA
        )
        return provisioner == self.driver_name

    async def reconcile(self, key: str) -> Outcome:
        claim = self.claims.get(key)
        if claim is None:
            return None
        meta, spec = claim["metadata"], claim.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return await self._deleted_while_provisioning(claim)
        if spec.get("volumeName"):
            await self._provisioned(claim)
            return None
        storage_class = await self._storage_class(spec.get("storageClassName") or "")
        if storage_class is None or storage_class.get("provisioner") != self.driver_name:
            return None
        if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not (
            meta.get("annotations") or {}
        ).get("volume.kubernetes.io/selected-node"):
            return None  # the scheduler picks a node first; we are called again then
        pv_name = f"pvc-{meta['uid']}"
        try:
            if await self.api.get(PERSISTENT_VOLUME, pv_name) is not None:
                await self._provisioned(claim)
                return None  # provisioned already; kube-controller-manager binds it
            plan = await self._plan(claim, storage_class)
            claim = await self._mark_provisioning(claim, plan.volume)
            volume = await self.azure.create_volume(plan.volume, plan.size_gib, plan.source)
            await self._create_pv(pv_name, claim, storage_class, volume)
            await self._provisioned(claim)
        except SnapshotterError as exc:
            waiting = isinstance(exc, retry.Waiting)
            if not waiting:
                metrics.RESTORES.labels(source=_source_kind(claim), outcome=exc.reason).inc()
            return await retry.handle(
                self.recorder,
                claim,
                exc,
                resource=PERSISTENT_VOLUME_CLAIM.kind,
                reason=None if waiting else "ProvisioningFailed",
            )
        metrics.RESTORES.labels(source=_source_kind(claim), outcome="Success").inc()
        await self.recorder.record(
            claim,
            NORMAL,
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {pv_name} ({volume.size_gib}Gi Elastic SAN volume {volume.id.arm_id})",
        )
        if plan.source_size_gib is not None and volume.size_gib > plan.source_size_gib:
            await self.recorder.record(
                claim,
                NORMAL,
                "VolumeLargerThanSnapshot",
                f"the volume is {volume.size_gib}Gi and the snapshot {plan.source_size_gib}Gi; the file "
                "system inside is not grown: grow it from the node (for example resize2fs or xfs_growfs)",
            )
        return None

    # -- crash safety: the claim records the volume being made for it ----------------------

    async def _mark_provisioning(self, claim: Body, volume: VolumeId) -> Body:
        """Finalizer and volume ID on the claim before the Azure create.

        Elastic SAN volumes carry no tags, and a volume without a claim or PV may be one
        whose Retain PV was deleted on purpose, so a sweep could not tell an orphan. The
        claim itself keeps the record instead: deleted mid-provisioning (the operator down or
        not), it waits for the volume to be deleted.
        """
        meta = claim["metadata"]
        if FIN_CLAIM_PROVISIONING in (meta.get("finalizers") or []):
            return claim
        patch = {
            "metadata": {
                "finalizers": [*(meta.get("finalizers") or []), FIN_CLAIM_PROVISIONING],
                "annotations": {ANN_PROVISIONING_VOLUME: volume.arm_id},
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        updated = await self.api.patch(PERSISTENT_VOLUME_CLAIM, meta["name"], patch, meta["namespace"])
        self.claims.apply("MODIFIED", updated)
        return updated

    async def _provisioned(self, claim: Body) -> None:
        """The PV exists: it (and the PV's own reclaim policy) now answers for the volume."""
        if FIN_CLAIM_PROVISIONING in (claim["metadata"].get("finalizers") or []):
            await self.api.remove_finalizer(PERSISTENT_VOLUME_CLAIM, claim, FIN_CLAIM_PROVISIONING)

    async def _deleted_while_provisioning(self, claim: Body) -> Outcome:
        meta = claim["metadata"]
        if FIN_CLAIM_PROVISIONING not in (meta.get("finalizers") or []):
            return None
        try:
            if await self.api.get(PERSISTENT_VOLUME, f"pvc-{meta['uid']}") is None:
                arm_id = (meta.get("annotations") or {}).get(ANN_PROVISIONING_VOLUME)
                if arm_id:
                    volume = VolumeId.parse(str(arm_id), self.subscription)
                    with contextlib.suppress(NotFound):
                        # Never with snapshots: a volume that has some was in use after all.
                        await self.azure.delete_volume(volume, delete_snapshots=False)
                    await self.recorder.record(
                        claim,
                        NORMAL,
                        "ProvisioningAbandoned",
                        f"the claim was deleted before its volume was handed over: deleted Elastic SAN "
                        f"volume {volume.arm_id}",
                    )
            await self.api.remove_finalizer(PERSISTENT_VOLUME_CLAIM, claim, FIN_CLAIM_PROVISIONING)
        except SnapshotterError as exc:
            return await retry.handle(self.recorder, claim, exc, resource=PERSISTENT_VOLUME_CLAIM.kind)
        return None

    async def _storage_class(self, name: str) -> Body | None:
        if not name:
            return None
        found = self.storage_classes.get(name)
        if found is None:
            found = await self.api.get(STORAGE_CLASS, name)
            if found is not None:
                self.storage_classes.apply("ADDED", found)
        return found

    # -- planning -------------------------------------------------------------------

    async def _plan(self, claim: Body, storage_class: Body) -> provisioning.VolumePlan:
        """The Kubernetes side of a claim (class, data source, sizes); the storage rules are the domain's."""
        spec = claim.get("spec") or {}
        requested = decisions.quantity_to_bytes(
            ((spec.get("resources") or {}).get("requests") or {}).get("storage", 0)
        )
        params = class_parameters(storage_class)
        if params.unknown:
            message = parameters.unknown_message(
                params.unknown,
                parameters.STORAGE_CLASS_KEYS,
                f"StorageClass {storage_class['metadata']['name']}",
            )
            await self.recorder.record(claim, WARNING, "UnknownParameter", message)
        source = await self._restore_source(claim, storage_class, requested)
        try:
            return await provisioning.plan_volume(
                self.azure,
                name=names.volume_name(claim["metadata"]["uid"]),
                params=params,
                source=source,
                size=provisioning.SizeRequest(required_bytes=requested),
                managed=self.managed_sans,
            )
        except parameters.InvalidParameter as exc:
            raise parameters.InvalidParameter(
                f"StorageClass {storage_class['metadata']['name']} {exc}"
            ) from None

    async def _restore_source(self, claim: Body, storage_class: Body, requested: int) -> VolumeSource | None:
        """What the claim's data source names, once the checks csi-provisioner makes pass."""
        spec = claim.get("spec") or {}
        source = spec.get("dataSourceRef") or spec.get("dataSource")
        if not source:
            return None
        if source.get("kind") != "VolumeSnapshot" or (source.get("apiGroup") or "") != SNAPSHOT_GROUP:
            raise InvalidRequest(
                f"data source {source.get('kind')} {source.get('name')} is not supported; "
                f"only VolumeSnapshots ({SNAPSHOT_GROUP}) can be restored"
            )
        namespace = source.get("namespace") or claim["metadata"]["namespace"]
        if namespace != claim["metadata"]["namespace"]:
            raise InvalidRequest("restoring from a VolumeSnapshot in another namespace is not supported")
        handle, content = await self._checked_snapshot(claim, storage_class, source["name"], requested)
        decisions.check_volume_mode(
            (content.get("spec") or {}).get("sourceVolumeMode"),
            spec.get("volumeMode"),
            (content.get("metadata") or {}).get("annotations") or {},
        )
        return parse_snapshot_handle(handle, self.subscription)

    async def _checked_snapshot(
        self, claim: Body, storage_class: Body, vs_name: str, requested: int
    ) -> tuple[str, Body]:
        """The checks csi-provisioner makes before restoring a snapshot; returns its handle."""
        namespace = claim["metadata"]["namespace"]
        vs = await self.api.get(VOLUME_SNAPSHOT, vs_name, namespace)
        if vs is None:
            raise NotYet(f"VolumeSnapshot {namespace}/{vs_name} does not exist (yet)")
        status = vs.get("status") or {}
        content_name = status.get("boundVolumeSnapshotContentName")
        if not content_name:
            raise NotYet(f"VolumeSnapshot {namespace}/{vs_name} is not bound to a VolumeSnapshotContent yet")
        content = await self.api.get(VOLUME_SNAPSHOT_CONTENT, content_name)
        if content is None:
            raise NotYet(f"VolumeSnapshotContent {content_name} does not exist (yet)")
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (
            vs_name,
            namespace,
            vs["metadata"]["uid"],
        ):
            raise InvalidRequest(
                f"VolumeSnapshotContent {content_name} is not bound to VolumeSnapshot {namespace}/{vs_name}"
            )
        if content["spec"].get("driver") != storage_class.get("provisioner") and not self._of_the_pvs_driver(
            content
        ):
            raise InvalidRequest(
                f"VolumeSnapshotContent {content_name} is handled by driver {content['spec'].get('driver')!r}, "
                f"not by {storage_class.get('provisioner')!r}, the provisioner of StorageClass "
                f"{storage_class['metadata']['name']}"
            )
        if not status.get("readyToUse"):
            raise NotYet(f"VolumeSnapshot {namespace}/{vs_name} is not ready to use yet")
        handle = (content.get("status") or {}).get("snapshotHandle")
        if not handle:
            raise NotYet(f"VolumeSnapshotContent {content_name} has no snapshot handle yet")
        restore_size = status.get("restoreSize")
        if restore_size is not None and requested < decisions.quantity_to_bytes(restore_size):
            asked, needed = decisions.sizes_in_one_unit(requested, decisions.quantity_to_bytes(restore_size))
            raise InvalidRequest(
                f"the claim requests {asked}, less than the restore size {needed} of "
                f"VolumeSnapshot {namespace}/{vs_name}; request at least that much"
            )
        return str(handle), content

    def _of_the_pvs_driver(self, content: Body) -> bool:
        """Group members, and imports of their snapshots, carry the PVs' driver name, not ours."""
        return is_group_member(content, self.group_driver_name) or (
            imported_snapshot(content, self.group_driver_name, self.subscription) is not None
        )

    # -- the PersistentVolume ---------------------------------------------------------

    async def _create_pv(self, name: str, claim: Body, storage_class: Body, volume: VolumeInfo) -> None:
        meta, spec = claim["metadata"], claim.get("spec") or {}
        params = class_parameters(storage_class)
        mode = spec.get("volumeMode") or decisions.FILESYSTEM
        csi: dict[str, Any] = {
            "driver": ISCSI_DRIVER,
            "volumeHandle": volume.id.handle(self.subscription),
            "volumeAttributes": iscsi_volume_attributes(volume),
        }
        if mode == decisions.FILESYSTEM:
            csi["fsType"] = params.fstype
        pv: Body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {ANN_PROVISIONED_BY: self.driver_name, ANN_VOLUME_ID: volume.id.arm_id},
                "finalizers": [FIN_VOLUME],
            },
            "spec": {
                "capacity": {"storage": f"{volume.size_gib}Gi"},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
                "storageClassName": storage_class["metadata"]["name"],
                "volumeMode": mode,
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "csi": csi,
            },
        }
        if storage_class.get("mountOptions"):
            pv["spec"]["mountOptions"] = storage_class["mountOptions"]
        try:
            await self.api.create(PERSISTENT_VOLUME, pv)
        except SnapshotterError as exc:
            if exc.reason != "AlreadyExists":
                raise


def _source_kind(claim: Body) -> str:
    source = (claim.get("spec") or {}).get("dataSourceRef") or (claim.get("spec") or {}).get("dataSource")
    return "snapshot" if source else "empty"
