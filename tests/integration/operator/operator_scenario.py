"""Building blocks for operator tests: Kubernetes objects shaped as users write them, and waits."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

RESOURCE_GROUP = "rg-ess"
SAN = "san1"
VOLUME_GROUP = "vg1"

GROUP, VERSION = "snapshot.storage.k8s.io", "v1"
FAST = ("--lro-retry-after", "0", "--throttle-retry-after", "1", "--export-seconds", "2")
"""Emulator flags that keep long-running operations and exports short."""

StartOperator = Callable[..., OperatorProcess]
"""Starts the operator with extra environment (the ``start_operator`` fixture)."""


class Kube:
    """Thin synchronous access to the objects the scenarios touch."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)
        self.storage = k8s.StorageV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    # -- snapshot objects --
    def create_snapshot_class(self, name: str, deletion_policy: str = "Delete", **parameters: str) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": name, "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
            "driver": DRIVER_NAME,
            "deletionPolicy": deletion_policy,
        }
        if parameters:
            body["parameters"] = parameters
        self.custom.create_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", body)

    def create_snapshot(
        self,
        namespace: str,
        name: str,
        claim: str | None = None,
        *,
        snapshot_class: str | None = None,
        content: str | None = None,
        labels: dict[str, str] | None = None,
        generate_name: bool = False,
    ) -> dict[str, Any]:
        source = {"persistentVolumeClaimName": claim} if claim else {"volumeSnapshotContentName": content}
        spec: dict[str, Any] = {"source": source}
        if snapshot_class:
            spec["volumeSnapshotClassName"] = snapshot_class
        metadata: dict[str, Any] = {"generateName": name} if generate_name else {"name": name}
        if labels:
            metadata["labels"] = labels
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshot",
            "metadata": metadata,
            "spec": spec,
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "volumesnapshots", body
        )
        return created

    def snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "volumesnapshots", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def content(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_cluster_custom_object(
                GROUP, VERSION, "volumesnapshotcontents", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def create_content(
        self,
        name: str,
        handle: str,
        *,
        snapshot_namespace: str,
        snapshot_name: str,
        deletion_policy: str = "Retain",
        driver: str = DRIVER_NAME,
        annotations: dict[str, str] | None = None,
    ) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "driver": driver,
                "deletionPolicy": deletion_policy,
                "source": {"snapshotHandle": handle},
                "volumeSnapshotRef": {"name": snapshot_name, "namespace": snapshot_namespace},
            },
        }
        self.custom.create_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", body)

    def delete_snapshot(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", name)

    def wait_snapshot_ready(self, namespace: str, name: str, timeout: float = 90.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            vs = self.snapshot(namespace, name)
            return vs if vs and (vs.get("status") or {}).get("readyToUse") else None

        return wait_for(f"VolumeSnapshot {namespace}/{name} to be ready", ready, timeout)

    # -- storage --
    def create_storage_class(self, name: str, reclaim_policy: str = "Delete", **parameters: str) -> None:
        self.storage.create_storage_class(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name},
                "provisioner": DRIVER_NAME,
                "reclaimPolicy": reclaim_policy,
                "volumeBindingMode": "Immediate",
                "parameters": parameters or None,
            }
        )

    def create_static_volume(
        self,
        name: str,
        storage_class: str,
        *,
        iqn: str,
        portal: str,
        size: str = "10Gi",
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.core.create_persistent_volume(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": annotations or None},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": storage_class,
                    "csi": {
                        "driver": "iscsi.csi.k8s.io",
                        "volumeHandle": f"iscsi-{name}",
                        "volumeAttributes": {
                            "targetPortal": portal,
                            "portals": "[]",
                            "iqn": iqn,
                            "lun": "0",
                            "iscsiInterface": "default",
                            "discoveryCHAPAuth": "false",
                            "sessionCHAPAuth": "false",
                        },
                    },
                },
            }
        )

    def create_claim(
        self,
        namespace: str,
        name: str,
        storage_class: str,
        size: str = "10Gi",
        *,
        volume_name: str | None = None,
        snapshot: str | None = None,
    ) -> None:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": storage_class,
        }
        if volume_name:
            spec["volumeName"] = volume_name
        if snapshot:
            spec["dataSource"] = {"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": snapshot}
        self.core.create_namespaced_persistent_volume_claim(
            namespace,
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec},
        )

    def wait_claim_bound(
        self, namespace: str, name: str, timeout: float = 90.0
    ) -> k8s.V1PersistentVolumeClaim:
        def bound() -> k8s.V1PersistentVolumeClaim | None:
            pvc = self.core.read_namespaced_persistent_volume_claim(name, namespace)
            return pvc if pvc.status.phase == "Bound" else None

        return wait_for(f"claim {namespace}/{name} to be Bound", bound, timeout)

    def events(self, namespace: str, name: str) -> list[k8s.CoreV1Event]:
        found = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        return list(found.items)

    def wait_event(self, namespace: str, name: str, reason: str, timeout: float = 60.0) -> k8s.CoreV1Event:
        def find() -> k8s.CoreV1Event | None:
            return next((e for e in self.events(namespace, name) if e.reason == reason), None)

        return wait_for(f"event {reason} on {namespace}/{name}", find, timeout)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def static_claim(kube: Kube, namespace: str, volume: Any, storage_class: str, claim: str = "data") -> str:
    """An existing Elastic SAN volume as users attach it today: a static iSCSI PV and a claim."""
    target = volume.storage_target
    pv = unique_name("esan-pv")
    kube.create_static_volume(
        pv,
        storage_class,
        iqn=target.target_iqn,
        portal=f"{target.target_portal_hostname}:{target.target_portal_port}",
    )
    kube.create_claim(namespace, claim, storage_class, volume_name=pv)
    kube.wait_claim_bound(namespace, claim)
    return pv


MADE_BY_DRIVER = "elasticsan.snapshotter.dev/made-by-driver"
SNAPSHOT_BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"


def create_in_flight(contents: list[dict[str, Any] | None], azure_has_snapshots: Callable[[], bool]) -> bool:
    """Whether a snapshot create may be in flight for one of ``contents``.

    A content snapshot-controller made carries the being-created annotation around the Azure
    create; one the operator made is the mark itself, so for it the Azure side tells.
    """
    unready = [c for c in contents if c and not (c.get("status") or {}).get("readyToUse")]
    marks = [set(c["metadata"].get("annotations") or {}) for c in unready]
    if any(SNAPSHOT_BEING_CREATED in m for m in marks):
        return True
    return any(MADE_BY_DRIVER in m for m in marks) and azure_has_snapshots()


def snapshots_of(esan: Any, volume_name: str) -> list[Any]:
    return list(
        esan.volume_snapshots.list_by_volume_group(
            RESOURCE_GROUP, SAN, VOLUME_GROUP, filter=f"volumeName eq {volume_name}"
        )
    )
