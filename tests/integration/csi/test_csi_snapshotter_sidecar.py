"""The upstream csi-snapshotter sidecar (external-snapshotter v8.6.0) driving csi-controller.

Real API server, real snapshot-controller, real sidecar, our plugin on the emulator: a
VolumeSnapshot of a static iSCSI PV whose volumeHandle is our compact handle becomes ready,
and deleting it deletes the Elastic SAN snapshot.

Only one snapshotter may own a driver name. The test takes a driver name of its own, so the
operator's snapshotter (which other tests may run in this session) never sees these objects.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from csi_harness import (
    SEEDED_VOLUME,
    SEEDED_VOLUME_GIB,
    SNAPSHOT_GROUP,
    SNAPSHOT_VERSION,
    Plugin,
    csi_controller,
    csi_snapshotter,
    emulator,
    emulator_snapshots,
    short_dir,
    unique_driver_name,
    volume_arm_id,
)
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from waiting import wait_for

GROUP, VERSION = SNAPSHOT_GROUP, SNAPSHOT_VERSION
GIB = 1024**3


@pytest.fixture
def stack(
    cluster: LocalCluster, artifacts: Artifacts, tmp_path: Path
) -> Iterator[tuple[EmulatorProcess, Plugin]]:
    """Emulator, csi-controller and the csi-snapshotter sidecar on its socket, for a fresh driver name."""
    workdir = short_dir("sidecar-")
    try:
        with (
            emulator(tmp_path / "emulator") as process,
            csi_controller(process.info, workdir, unique_driver_name()) as plugin,
            csi_snapshotter(artifacts, cluster, plugin, tmp_path / "csi-snapshotter.log"),
        ):
            yield process, plugin
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def static_pv(name: str, handle: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": f"{SEEDED_VOLUME_GIB}Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "csi": {
                # Elastic SAN volumes reach pods through the iSCSI node plugin; the handle is ours.
                "driver": "iscsi.csi.k8s.io",
                "volumeHandle": handle,
                "volumeAttributes": {"targetPortal": "192.0.2.1:3260", "iqn": "iqn.test:vol", "lun": "0"},
            },
        },
    }


def claim(name: str, namespace: str, pv_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{SEEDED_VOLUME_GIB}Gi"}},
            "storageClassName": "",
            "volumeName": pv_name,
        },
    }


def test_volume_snapshot_through_the_upstream_sidecar(
    api_client: k8s.ApiClient, namespace: str, stack: tuple[EmulatorProcess, Plugin]
) -> None:
    process, plugin = stack
    core, custom = k8s.CoreV1Api(api_client), k8s.CustomObjectsApi(api_client)
    info = process.info
    handle = VolumeId.parse(volume_arm_id(info, SEEDED_VOLUME), info.subscription_id).handle(
        info.subscription_id
    )
    suffix = uuid.uuid4().hex[:8]
    pv_name, class_name, snap_name = f"esan-csi-{suffix}", f"esan-csi-{suffix}", "snap"

    # Nothing else may own this driver name: no content for it exists before we start.
    contents = custom.list_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents")["items"]
    assert not [c for c in contents if c["spec"]["driver"] == plugin.driver_name]

    core.create_persistent_volume(static_pv(pv_name, handle))
    core.create_namespaced_persistent_volume_claim(namespace, claim("data", namespace, pv_name))
    wait_for(
        "the claim to bind",
        lambda: core.read_namespaced_persistent_volume_claim("data", namespace).status.phase == "Bound",
    )
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "volumesnapshotclasses",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": class_name},
            "driver": plugin.driver_name,
            "deletionPolicy": "Delete",
        },
    )
    try:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "volumesnapshots",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "VolumeSnapshot",
                "metadata": {"name": snap_name},
                "spec": {
                    "volumeSnapshotClassName": class_name,
                    "source": {"persistentVolumeClaimName": "data"},
                },
            },
        )

        def ready() -> dict[str, Any] | None:
            vs = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", snap_name)
            return vs if vs.get("status", {}).get("readyToUse") else None

        snapshot = wait_for("the VolumeSnapshot to become ready", ready)
        uid = snapshot["metadata"]["uid"]
        content = custom.get_cluster_custom_object(
            GROUP, VERSION, "volumesnapshotcontents", snapshot["status"]["boundVolumeSnapshotContentName"]
        )
        assert content["spec"]["driver"] == plugin.driver_name
        assert content["status"]["snapshotHandle"] == handle.rsplit("#", 1)[0] + f"#snapshot-{uid}"
        assert content["status"]["restoreSize"] == SEEDED_VOLUME_GIB * GIB
        assert content["status"]["creationTime"] > 0
        assert snapshot["status"]["restoreSize"] == f"{SEEDED_VOLUME_GIB}Gi"
        in_azure = emulator_snapshots(process)
        assert [s for s in in_azure if s.lower().endswith(f"/snapshots/snapshot-{uid}")], in_azure

        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", snap_name)

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", snap_name)
            except ApiException as error:
                return error.status == 404
            return False

        wait_for("the VolumeSnapshot and its content to be deleted", gone)
        assert emulator_snapshots(process) == []
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", class_name)
        core.delete_persistent_volume(pv_name)
