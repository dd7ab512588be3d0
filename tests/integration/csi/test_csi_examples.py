"""The manifests in examples/ through the CSI controller: the same classes the operator test applies.

Snapshots go through the pinned csi-snapshotter sidecar with examples/volumesnapshotclass.yaml
and examples/volumesnapshot.yaml of the claim in examples/static-volume.yaml. The provisioning
side has no pinned external-provisioner, so ``CreateVolume`` is called over the plugin's socket
with examples/storageclass.yaml's parameters as csi-provisioner hands them over: the
``csi.storage.k8s.io/fstype`` key becomes the mount capability's file system, and
``--extra-create-metadata`` adds the claim's name and namespace.

Only the driver name and the names of cluster-scoped objects are changed (one snapshotter may
own a driver name, and the operator's example test leaves its objects behind); every
parameter, policy and label is applied as written.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from csi_harness import (
    SNAPSHOT_GROUP,
    SNAPSHOT_VERSION,
    Plugin,
    csi_controller,
    csi_snapshotter,
    emulator,
    emulator_snapshots,
    short_dir,
    unique_driver_name,
)
from kubernetes import client as k8s

from elasticsan_snapshotter.csi._stubs import pb, pb_grpc
from elasticsan_snapshotter.domain import parameters
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from examples_seed import EXAMPLE_SEED, RESOURCE_GROUP, SAN, SAN_ID, SUBSCRIPTION, VOLUME_GROUP, example
from waiting import wait_for

GIB = 1024**3
GROUP, VERSION = SNAPSHOT_GROUP, SNAPSHOT_VERSION


@pytest.fixture
def stack(
    cluster: LocalCluster, artifacts: Artifacts, tmp_path: Path
) -> Iterator[tuple[EmulatorProcess, Plugin]]:
    """The emulator holding what the examples name, the plugin managing their SAN, and the sidecar."""
    workdir = short_dir("examples-")
    try:
        with (
            emulator(tmp_path / "emulator", EXAMPLE_SEED, ("--subscription-id", SUBSCRIPTION)) as process,
            csi_controller(process.info, workdir, unique_driver_name(), managed_san=SAN_ID) as plugin,
            csi_snapshotter(artifacts, cluster, plugin, tmp_path / "csi-snapshotter.log"),
        ):
            yield process, plugin
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def as_provisioner_sends(storage_class: dict[str, Any], claim: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The class's parameters as csi-provisioner passes them on, and the file system it asks for."""
    sent = {str(k): str(v) for k, v in (storage_class.get("parameters") or {}).items()}
    fstype = sent.pop(parameters.FSTYPE, "")
    meta = claim["metadata"]
    sent[f"{parameters.RESERVED_PREFIX}pvc/name"] = meta["name"]
    sent[f"{parameters.RESERVED_PREFIX}pvc/namespace"] = meta.get("namespace", "default")
    sent[f"{parameters.RESERVED_PREFIX}pv/name"] = f"pvc-{uuid.uuid4()}"
    return sent, fstype


def create_volume(
    plugin: Plugin, storage_class: dict[str, Any], claim: dict[str, Any], source: str = ""
) -> pb.Volume:
    sent, fstype = as_provisioner_sends(storage_class, claim)
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert size.endswith("Gi")
    request = pb.CreateVolumeRequest(
        name=sent[f"{parameters.RESERVED_PREFIX}pv/name"],
        capacity_range=pb.CapacityRange(required_bytes=int(size[:-2]) * GIB),
        volume_capabilities=[
            pb.VolumeCapability(
                mount=pb.VolumeCapability.MountVolume(fs_type=fstype),
                access_mode=pb.VolumeCapability.AccessMode(
                    mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
                ),
            )
        ],
        parameters=sent,
    )
    if source:
        request.volume_content_source.snapshot.snapshot_id = source
    with grpc.insecure_channel(plugin.endpoint) as channel:
        answer = pb_grpc.ControllerStub(channel).CreateVolume(request, timeout=120)
    return answer.volume


def test_examples_in_csi_mode(
    api_client: k8s.ApiClient, namespace: str, stack: tuple[EmulatorProcess, Plugin]
) -> None:
    process, plugin = stack
    core, custom = k8s.CoreV1Api(api_client), k8s.CustomObjectsApi(api_client)
    suffix = uuid.uuid4().hex[:8]
    [storage_class] = example("storageclass.yaml")
    [snapshot_class] = example("volumesnapshotclass.yaml")
    pv, static_claim = example("static-volume.yaml")
    [volume_snapshot] = example("volumesnapshot.yaml")
    [restore_claim] = example("restore.yaml")

    class_name = f"{storage_class['metadata']['name']}-{suffix}"
    storage_class["metadata"]["name"] = class_name
    storage_class["provisioner"] = plugin.driver_name
    snapshot_class["metadata"]["name"] = class_name
    snapshot_class["driver"] = plugin.driver_name
    pv["metadata"]["name"] = f"{pv['metadata']['name']}-{suffix}"
    pv["spec"]["storageClassName"] = class_name
    static_claim["spec"].update(storageClassName=class_name, volumeName=pv["metadata"]["name"])
    volume_snapshot["spec"]["volumeSnapshotClassName"] = class_name

    # A claim of the class without a data source: a new, empty volume where the class says.
    empty = create_volume(plugin, storage_class, {**restore_claim, "spec": {**restore_claim["spec"]}})
    assert empty.volume_id.startswith(f"{SUBSCRIPTION}#{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#")
    assert empty.capacity_bytes == 10 * GIB
    assert {"targetPortal", "iqn", "lun"} <= set(empty.volume_context)

    storage = k8s.StorageV1Api(api_client)
    storage.create_storage_class(storage_class)
    custom.create_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", snapshot_class)
    try:
        core.create_persistent_volume(pv)
        core.create_namespaced_persistent_volume_claim(namespace, static_claim)
        claim_name = static_claim["metadata"]["name"]
        wait_for(
            "the example claim to bind",
            lambda: (
                core.read_namespaced_persistent_volume_claim(claim_name, namespace).status.phase == "Bound"
            ),
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", volume_snapshot)
        snap_name = volume_snapshot["metadata"]["name"]

        def ready() -> dict[str, Any] | None:
            vs = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", snap_name)
            return vs if (vs.get("status") or {}).get("readyToUse") else None

        snapshot = wait_for("the example VolumeSnapshot to become ready", ready)
        assert snapshot["status"]["restoreSize"] == "10Gi"
        content = custom.get_cluster_custom_object(
            GROUP, VERSION, "volumesnapshotcontents", snapshot["status"]["boundVolumeSnapshotContentName"]
        )
        handle = content["status"]["snapshotHandle"]
        uid = snapshot["metadata"]["uid"]
        assert handle == f"{SUBSCRIPTION}#{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#snapshot-{uid}"

        # The restore claim's data source, as csi-provisioner resolves it: the content's handle.
        restored = create_volume(plugin, storage_class, restore_claim, source=handle)
        assert restored.content_source.snapshot.snapshot_id == handle
        assert restored.volume_id.startswith(f"{SUBSCRIPTION}#{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#")
        assert restored.capacity_bytes == 10 * GIB
        volume_name = restored.volume_id.rsplit("#", 1)[1]
        [made] = [
            r for r in process.admin.resources() if str(r["id"]).lower().endswith(f"/volumes/{volume_name}")
        ]
        assert str(made["properties"]["creationData"]["sourceId"]).endswith(f"/snapshots/snapshot-{uid}")

        with grpc.insecure_channel(plugin.endpoint) as channel:
            controller = pb_grpc.ControllerStub(channel)
            for volume in (restored, empty):
                controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=120)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", snap_name)
        wait_for("the example snapshot to be deleted in Azure", lambda: emulator_snapshots(process) == [])
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses", class_name)
        storage.delete_storage_class(class_name)
        core.delete_persistent_volume(pv["metadata"]["name"])
