"""Restores give back the data of their moment: real ext4 file systems on emulated volumes.

The node stand-in mounts each PV where kubelet would; files are compared by checksum. The
emulator's state lives on a scratch XFS file system, so its snapshots are reflinks: one point
in time even while a writer is active.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from content_scenario import MIB, checksums, mount_claim, reflink_scratch, write_files
from export_scenario import Exports, install_crd
from kubernetes import client as k8s
from operator_emulator import seeded_emulator
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    StartOperator,
    static_claim,
    unique_name,
    wait_for,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.node import Mount, NodeStandIn, reflink_unavailable
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from node_support import require

GIB = 2**30


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A reflink file system for the emulator's state, or None (then only point-in-time tests skip)."""
    with reflink_scratch(tmp_path_factory) as directory:
        yield directory


@pytest.fixture(scope="module")
def emulator(scratch: Path | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = seeded_emulator(scratch / "emulator" if scratch else tmp_path_factory.mktemp("emulator"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def operator(api_client: k8s.ApiClient, start_operator: StartOperator) -> OperatorProcess:
    install_crd(api_client)  # exports are watched only when the CRD is served at start
    return start_operator()


def _snapshot(kube: Kube, namespace: str, name: str, claim: str, snapshot_class: str) -> dict[str, Any]:
    kube.create_snapshot(namespace, name, claim, snapshot_class=snapshot_class)
    return kube.wait_snapshot_ready(namespace, name)


@dataclass
class Source:
    """Classes, and an existing Elastic SAN volume attached as a static PV, mounted on the node."""

    storage_class: str
    snapshot_class: str
    volume: Any
    mount: Mount


def _source(kube: Kube, node: NodeStandIn, namespace: str, san_id: str, volume: Any) -> Source:
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class, elasticSanId=san_id, volumeGroup=VOLUME_GROUP)
    kube.create_snapshot_class(snapshot_class, "Delete")
    pv = static_claim(kube, namespace, volume, storage_class)
    mount = node.publish(pv, kube.core.read_persistent_volume(pv).spec.csi.volume_attributes)
    return Source(storage_class, snapshot_class, volume, mount)


def _restore_handle(node: NodeStandIn, kube: Kube, namespace: str, storage_class: str, handle: str) -> Mount:
    """Restore a snapshot handle as a backup tool does: pre-provisioned content, VolumeSnapshot, claim."""
    content = unique_name("imported")
    kube.create_content(content, handle, snapshot_namespace=namespace, snapshot_name="imported")
    kube.create_snapshot(namespace, "imported", content=content)
    kube.wait_snapshot_ready(namespace, "imported")
    kube.create_claim(namespace, "restored", storage_class, "10Gi", snapshot="imported")
    return mount_claim(node, kube, namespace, "restored")


FILES = ["a.bin", "b.bin", "c.bin"]


def test_each_restore_holds_what_its_snapshot_saw(
    operator: OperatorProcess,
    node: NodeStandIn,
    kube: Kube,
    namespace: str,
    san_id: str,
    source_volume: Callable[..., Any],
) -> None:
    setup = _source(kube, node, namespace, san_id, source_volume(10))
    source = setup.mount
    assert source.formatted  # a new volume: the node made its file system
    old = write_files(source, FILES)
    _snapshot(kube, namespace, "before", "data", setup.snapshot_class)
    new = write_files(source, FILES)
    assert new != old
    _snapshot(kube, namespace, "after", "data", setup.snapshot_class)

    kube.create_claim(namespace, "old", setup.storage_class, "10Gi", snapshot="before")
    kube.create_claim(namespace, "new", setup.storage_class, "20Gi", snapshot="after")
    restored_old = mount_claim(node, kube, namespace, "old")
    restored_new = mount_claim(node, kube, namespace, "new")
    assert not restored_old.formatted
    assert not restored_new.formatted  # the snapshot's file system, not a new one
    assert checksums(restored_old, FILES) == old
    assert checksums(restored_new, FILES) == new
    # The larger restore keeps the data on a larger disk (its file system is not grown).
    assert restored_old.size_bytes() == 10 * GIB
    assert restored_new.size_bytes() == 20 * GIB
    assert checksums(source, FILES) == new


def test_an_export_outlives_its_source_volume(
    operator: OperatorProcess,
    node: NodeStandIn,
    kube: Kube,
    api_client: k8s.ApiClient,
    esan: ElasticSanMgmtClient,
    namespace: str,
    san_id: str,
    source_volume: Callable[..., Any],
) -> None:
    setup = _source(kube, node, namespace, san_id, source_volume(10))
    source, volume = setup.mount, setup.volume
    saved = write_files(source, FILES)
    _snapshot(kube, namespace, "snap", "data", setup.snapshot_class)
    exports = Exports(api_client)
    exports.create(namespace, "keep", volume_snapshot="snap")
    disk_id = exports.wait_phase(namespace, "keep", "Succeeded")["status"]["diskSnapshotId"]
    write_files(source, FILES)  # changed after the export: must not show up

    # The source goes: its snapshot, its claim, its volume.
    node.unpublish(source)
    kube.delete_snapshot(namespace, "snap")
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    kube.core.delete_namespaced_persistent_volume_claim("data", namespace)
    esan.volumes.begin_delete(
        RESOURCE_GROUP, SAN, VOLUME_GROUP, volume.name, x_ms_delete_snapshots="true"
    ).result()

    restored = _restore_handle(node, kube, namespace, setup.storage_class, disk_id)
    assert checksums(restored, FILES) == saved


def test_a_pre_provisioned_import_restores_the_imported_handle(
    operator: OperatorProcess,
    node: NodeStandIn,
    kube: Kube,
    esan: ElasticSanMgmtClient,
    namespace: str,
    san_id: str,
    source_volume: Callable[..., Any],
) -> None:
    setup = _source(kube, node, namespace, san_id, source_volume(10))
    source, volume = setup.mount, setup.volume
    saved = write_files(source, FILES)
    # A snapshot taken outside this cluster (as a backup tool would have recorded it), then more writes.
    handle = f"{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#{unique_name('backup')}"
    esan.volume_snapshots.begin_create(
        RESOURCE_GROUP,
        SAN,
        VOLUME_GROUP,
        handle.rsplit("#", 1)[1],
        {"properties": {"creationData": {"sourceId": volume.id}}},
    ).result()
    write_files(source, FILES)

    restored = _restore_handle(node, kube, namespace, setup.storage_class, handle)
    assert checksums(restored, FILES) == saved


def test_a_snapshot_under_an_appending_writer_is_crash_consistent(
    scratch: Path | None,
    operator: OperatorProcess,
    node: NodeStandIn,
    kube: Kube,
    namespace: str,
    san_id: str,
    source_volume: Callable[..., Any],
) -> None:
    require(reflink_unavailable())
    assert scratch is not None
    setup = _source(kube, node, namespace, san_id, source_volume(10))
    log = setup.mount.path / "log"
    written = bytearray()
    synced = [0]
    stop = threading.Event()

    def append() -> None:
        with open(log, "ab") as handle:
            number = 0
            while not stop.is_set():
                record = f"{number:08d} ".encode() + os.urandom(64 * 1024 - 9)
                handle.write(record)
                handle.flush()
                written.extend(record)
                if number % 4 == 0:
                    os.fsync(handle.fileno())
                    synced[0] = len(written)
                number += 1

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    try:
        wait_for("the writer to have synced data", lambda: synced[0] >= 8 * MIB, timeout=60, interval=0.05)
        durable = synced[0]  # fsynced before the snapshot was asked for: it must be in it
        _snapshot(kube, namespace, "busy", "data", setup.snapshot_class)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()

    kube.create_claim(namespace, "restored", setup.storage_class, "10Gi", snapshot="busy")
    restored = mount_claim(node, kube, namespace, "restored")  # replays the journal
    data = (restored.path / "log").read_bytes()
    assert len(data) >= durable
    assert data == bytes(written[: len(data)]), "the restored log is not a prefix of what was written"
    check = node.fsck(restored)
    assert check.returncode == 0, check.stdout + check.stderr
