"""The upstream machinery the project plugs into, on the real local control plane.

No part of the project runs here: these tests prove that kube-controller-manager
binds an Elastic SAN shaped iSCSI PV, that the upstream snapshot-controller turns
a VolumeSnapshot of it into a VolumeSnapshotContent for our driver, and that the
VolumeSnapshot CRD's own validation is enforced by the API server.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from elasticsan_snapshotter import DRIVER_NAME
from waiting import wait_for

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
SNAPSHOT_VERSION = "v1"


def iscsi_pv(name: str, storage_class: str, size: str = "10Gi") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "csi": {
                "driver": "iscsi.csi.k8s.io",
                "volumeHandle": f"iscsi-{name}",
                "volumeAttributes": {
                    "targetPortal": "es-3ibot5m2r3y0.z1.blob.storage.azure.net:3260",
                    "portals": "[]",
                    "iqn": f"iqn.2023-03.net.windows.core.blob.ElasticSan.es-3ibot5m2r3y0:{name}",
                    "lun": "0",
                    "iscsiInterface": "default",
                    "discoveryCHAPAuth": "false",
                    "sessionCHAPAuth": "false",
                },
            },
        },
    }


def storage_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": DRIVER_NAME,
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }


def claim(name: str, namespace: str, volume_name: str, storage_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": storage_class,
            "volumeName": volume_name,
        },
    }


@pytest.fixture
def bound_claim(api_client: k8s.ApiClient, namespace: str) -> tuple[str, str]:
    core = k8s.CoreV1Api(api_client)
    storage = k8s.StorageV1Api(api_client)
    suffix = uuid.uuid4().hex[:8]
    sc_name, pv_name, pvc_name = f"esan-{suffix}", f"esan-pv-{suffix}", "data"
    storage.create_storage_class(storage_class(sc_name))
    core.create_persistent_volume(iscsi_pv(pv_name, sc_name))
    core.create_namespaced_persistent_volume_claim(namespace, claim(pvc_name, namespace, pv_name, sc_name))

    def bound() -> bool:
        pvc = core.read_namespaced_persistent_volume_claim(pvc_name, namespace)
        return bool(pvc.status.phase == "Bound")

    wait_for("kube-controller-manager to bind the claim", bound, timeout=60)
    return pvc_name, pv_name


def test_static_iscsi_pv_is_bound_by_controller_manager(
    api_client: k8s.ApiClient, namespace: str, bound_claim: tuple[str, str]
) -> None:
    core = k8s.CoreV1Api(api_client)
    pvc_name, pv_name = bound_claim
    pvc = core.read_namespaced_persistent_volume_claim(pvc_name, namespace)
    pv = core.read_persistent_volume(pv_name)
    assert pvc.spec.volume_name == pv_name
    assert pv.status.phase == "Bound"
    assert pv.spec.claim_ref.name == pvc_name
    assert pv.spec.claim_ref.namespace == namespace
    # The binder records that it did the binding.
    assert pvc.metadata.annotations.get("pv.kubernetes.io/bind-completed") == "yes"


def test_snapshot_controller_creates_content_for_our_driver(
    api_client: k8s.ApiClient, namespace: str, bound_claim: tuple[str, str]
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    core = k8s.CoreV1Api(api_client)
    pvc_name, pv_name = bound_claim
    class_name = f"esan-snap-{uuid.uuid4().hex[:8]}"
    custom.create_cluster_custom_object(
        SNAPSHOT_GROUP,
        SNAPSHOT_VERSION,
        "volumesnapshotclasses",
        {
            "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": class_name},
            "driver": DRIVER_NAME,
            "deletionPolicy": "Delete",
        },
    )
    custom.create_namespaced_custom_object(
        SNAPSHOT_GROUP,
        SNAPSHOT_VERSION,
        namespace,
        "volumesnapshots",
        {
            "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "snap"},
            "spec": {
                "volumeSnapshotClassName": class_name,
                "source": {"persistentVolumeClaimName": pvc_name},
            },
        },
    )

    def bound_content_name() -> str | None:
        vs = custom.get_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", "snap"
        )
        name: str | None = vs.get("status", {}).get("boundVolumeSnapshotContentName")
        return name

    content_name = wait_for(
        "snapshot-controller to create the VolumeSnapshotContent", bound_content_name, timeout=60
    )
    vs = custom.get_namespaced_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", "snap"
    )
    content = custom.get_cluster_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", content_name
    )
    pv = core.read_persistent_volume(pv_name)

    assert content_name == f"snapcontent-{vs['metadata']['uid']}"
    assert content["spec"]["driver"] == DRIVER_NAME
    assert content["spec"]["source"]["volumeHandle"] == pv.spec.csi.volume_handle
    assert content["spec"]["volumeSnapshotRef"]["uid"] == vs["metadata"]["uid"]
    assert content["spec"]["deletionPolicy"] == "Delete"
    # Nothing reconciles our driver here, so the snapshot is not ready and has no handle.
    time.sleep(2)
    content = custom.get_cluster_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", content_name
    )
    assert "snapshotHandle" not in content.get("status", {})
    vs = custom.get_namespaced_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", "snap"
    )
    assert vs.get("status", {}).get("readyToUse") is not True
    # Clean up the content: without a snapshotter its finalizer would hold it forever.
    custom.patch_cluster_custom_object(
        SNAPSHOT_GROUP,
        SNAPSHOT_VERSION,
        "volumesnapshotcontents",
        content_name,
        {"metadata": {"finalizers": None}},
    )


def test_api_server_enforces_volumesnapshot_crd_validation(api_client: k8s.ApiClient, namespace: str) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    invalid = {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "both-sources"},
        # The CRD allows exactly one source.
        "spec": {"source": {"persistentVolumeClaimName": "data", "volumeSnapshotContentName": "content"}},
    }
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", invalid
        )
    assert refused.value.status == 422
    assert "exactly one of volumeSnapshotContentName and persistentVolumeClaimName" in str(refused.value.body)
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", "both-sources"
        )
    assert missing.value.status == 404


GROUP_SNAPSHOT_GROUP = "groupsnapshot.storage.k8s.io"


def test_snapshot_controller_creates_group_content_for_the_volume_driver(
    api_client: k8s.ApiClient, namespace: str, bound_claim: tuple[str, str]
) -> None:
    """The group CRDs are served and snapshot-controller runs its group controller (feature gate on)."""
    custom = k8s.CustomObjectsApi(api_client)
    core = k8s.CoreV1Api(api_client)
    pvc_name, pv_name = bound_claim
    core.patch_namespaced_persistent_volume_claim(
        pvc_name, namespace, {"metadata": {"labels": {"app": "db"}}}
    )
    class_name = f"esan-group-{uuid.uuid4().hex[:8]}"
    custom.create_cluster_custom_object(
        GROUP_SNAPSHOT_GROUP,
        "v1",
        "volumegroupsnapshotclasses",
        {
            "apiVersion": f"{GROUP_SNAPSHOT_GROUP}/v1",
            "kind": "VolumeGroupSnapshotClass",
            "metadata": {"name": class_name},
            # The group class driver must equal the PV's CSI driver.
            "driver": "iscsi.csi.k8s.io",
            "deletionPolicy": "Retain",
        },
    )
    custom.create_namespaced_custom_object(
        GROUP_SNAPSHOT_GROUP,
        "v1",
        namespace,
        "volumegroupsnapshots",
        {
            "apiVersion": f"{GROUP_SNAPSHOT_GROUP}/v1",
            "kind": "VolumeGroupSnapshot",
            "metadata": {"name": "group"},
            "spec": {
                "volumeGroupSnapshotClassName": class_name,
                "source": {"selector": {"matchLabels": {"app": "db"}}},
            },
        },
    )

    def bound_content_name() -> str | None:
        vgs = custom.get_namespaced_custom_object(
            GROUP_SNAPSHOT_GROUP, "v1", namespace, "volumegroupsnapshots", "group"
        )
        name: str | None = (vgs.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
        return name

    content_name = wait_for("snapshot-controller to create the group content", bound_content_name, timeout=60)
    vgs = custom.get_namespaced_custom_object(
        GROUP_SNAPSHOT_GROUP, "v1", namespace, "volumegroupsnapshots", "group"
    )
    content = custom.get_cluster_custom_object(
        GROUP_SNAPSHOT_GROUP, "v1", "volumegroupsnapshotcontents", content_name
    )
    pv = core.read_persistent_volume(pv_name)
    assert content_name == f"groupsnapcontent-{vgs['metadata']['uid']}"
    assert content["spec"]["driver"] == "iscsi.csi.k8s.io"
    assert content["spec"]["source"]["volumeHandles"] == [pv.spec.csi.volume_handle]
    assert content["spec"]["volumeGroupSnapshotRef"]["uid"] == vgs["metadata"]["uid"]
    # Nothing snapshots groups here: no handle appears.
    assert "volumeGroupSnapshotHandle" not in (content.get("status") or {})
    custom.delete_namespaced_custom_object(
        GROUP_SNAPSHOT_GROUP, "v1", namespace, "volumegroupsnapshots", "group"
    )
    custom.patch_cluster_custom_object(
        GROUP_SNAPSHOT_GROUP,
        "v1",
        "volumegroupsnapshotcontents",
        content_name,
        {"metadata": {"finalizers": None}},
    )
    custom.delete_cluster_custom_object(
        GROUP_SNAPSHOT_GROUP, "v1", "volumegroupsnapshotcontents", content_name
    )
