"""Processes around the CSI integration tests: the Azure emulator, our csi-controller, a null node plugin.

The emulator is seeded with one Elastic SAN and volume group (and, for the sidecar test, one
volume); the plugin reaches it through the real Azure adapter with the emulator's tokens and CA,
configured exactly as a deployment would be: environment variables read by Settings.
"""

from __future__ import annotations

import json
import os
import socket as socketlib
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from elasticsan_snapshotter.csi._stubs import pb, pb_grpc
from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster

RESOURCE_GROUP = "rg-csi"
SAN = "san-csi"
VOLUME_GROUP = "vg1"
SEEDED_VOLUME = "seeded-vol"
SEEDED_VOLUME_GIB = 5
FAST_EMULATOR = ("--lro-retry-after", "0", "--throttle-retry-after", "0")
SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"


def unique_driver_name() -> str:
    """A driver name no other test (or the operator's snapshotter) uses."""
    return f"csi.{uuid.uuid4().hex[:8]}.elasticsan.snapshotter.dev"


def free_port() -> int:
    with socketlib.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def short_dir(prefix: str) -> Path:
    # Unix socket paths are limited to ~107 bytes, too short for pytest's tmp_path.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def san_arm_id(info: EmulatorInfo) -> str:
    return (
        f"/subscriptions/{info.subscription_id}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.ElasticSan/elasticSans/{SAN}"
    )


def volume_arm_id(info: EmulatorInfo, name: str) -> str:
    return f"{san_arm_id(info)}/volumegroups/{VOLUME_GROUP}/volumes/{name}"


@contextmanager
def emulator(
    state_dir: Path, document: dict[str, Any] | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[EmulatorProcess]:
    """The emulator seeded with ``document`` (default: the SAN of these tests and one volume)."""
    seed = state_dir / "seed.json"
    state_dir.mkdir(parents=True, exist_ok=True)
    document = document or {
        "elasticSans": [
            {
                "resourceGroup": RESOURCE_GROUP,
                "name": SAN,
                "location": "westeurope",
                "baseSizeTiB": 2,
                "extendedCapacitySizeTiB": 0,
                "sku": "Premium_LRS",
                "volumeGroups": [
                    {"name": VOLUME_GROUP, "volumes": [{"name": SEEDED_VOLUME, "sizeGiB": SEEDED_VOLUME_GIB}]}
                ],
            }
        ]
    }
    seed.write_text(json.dumps(document), encoding="utf-8")
    process = EmulatorProcess(state_dir, seed=seed, extra_args=[*FAST_EMULATOR, *extra_args])
    process.start()
    try:
        yield process
    finally:
        assert process.stop() == 0


@dataclass
class Plugin:
    endpoint: str
    socket: Path
    driver_name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def plugin_env(
    info: EmulatorInfo, driver_name: str, metrics_port: int, managed_san: str | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ESS_DRIVER_NAME": driver_name,
            "AZURE_SUBSCRIPTION_ID": info.subscription_id,
            "ESS_ARM_ENDPOINT": info.endpoint,
            "AZURE_AUTHORITY_HOST": info.authority,
            "ESS_CA_BUNDLE": info.ca_cert,
            "AZURE_TENANT_ID": info.tenant_id,
            "AZURE_CLIENT_ID": info.client_id,
            "AZURE_CLIENT_SECRET": info.client_secret,
            "ESS_MANAGED_SANS": managed_san or san_arm_id(info),
            "ESS_POLLING_INTERVAL": "0.1",
            "ESS_LOG_FORMAT": "text",
            "ESS_METRICS_PORT": str(metrics_port),
        }
    )
    return env


@contextmanager
def csi_controller(
    info: EmulatorInfo, workdir: Path, driver_name: str, managed_san: str | None = None
) -> Iterator[Plugin]:
    """``elasticsan-snapshotter csi-controller`` as a child process, stopped with SIGTERM at the end."""
    socket = workdir / "controller.sock"
    endpoint = f"unix://{socket}"
    log_path = workdir / "csi-controller.log"
    metrics_port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "elasticsan_snapshotter", "csi-controller", "--endpoint", endpoint],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=plugin_env(info, driver_name, metrics_port, managed_san),
        )
    plugin = Plugin(endpoint, socket, driver_name, process, log_path, metrics_port)
    try:
        wait_ready(plugin)
        yield plugin
    finally:
        process.terminate()
        try:
            status = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert status == 0, f"csi-controller exited with {status}:\n{plugin.log_tail()}"
        assert not socket.exists(), "the socket should be removed on a graceful stop"


def wait_ready(plugin: Plugin, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if plugin.process.poll() is not None:
            raise AssertionError(f"csi-controller exited early:\n{plugin.log_tail()}")
        if plugin.socket.exists():
            with grpc.insecure_channel(plugin.endpoint) as channel:
                try:
                    probe = pb_grpc.IdentityStub(channel).Probe(pb.ProbeRequest(), timeout=10)
                except grpc.RpcError:
                    probe = None
            if probe is not None and probe.ready.value:
                return
        time.sleep(0.2)
    raise AssertionError(f"csi-controller not ready within {timeout}s:\n{plugin.log_tail()}")


class _NullIdentity(pb_grpc.IdentityServicer):  # type: ignore[misc]
    def __init__(self, driver_name: str) -> None:
        self.driver_name = driver_name

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return pb.GetPluginInfoResponse(name=self.driver_name, vendor_version="null-node")

    def GetPluginCapabilities(self, request: Any, context: Any) -> Any:
        return pb.GetPluginCapabilitiesResponse()

    def Probe(self, request: Any, context: Any) -> Any:
        return pb.ProbeResponse()


class _NullNode(pb_grpc.NodeServicer):  # type: ignore[misc]
    """A node plugin with no capabilities: nothing is ever staged or published on it."""

    def NodeGetCapabilities(self, request: Any, context: Any) -> Any:
        return pb.NodeGetCapabilitiesResponse()

    def NodeUnpublishVolume(self, request: Any, context: Any) -> Any:
        return pb.NodeUnpublishVolumeResponse()

    def NodeGetInfo(self, request: Any, context: Any) -> Any:
        return pb.NodeGetInfoResponse(node_id="null-node")


@contextmanager
def null_node(workdir: Path, driver_name: str) -> Iterator[str]:
    """A node endpoint for csi-sanity, which calls Node RPCs while cleaning up every test's volumes.

    csi-sanity v5.4.0 always sends NodeUnpublishVolume and NodeGetCapabilities to its node
    endpoint when it deletes a volume (pkg/sanity/resources.go, cleanupVolume). This plugin is
    controller-only (the node side is csi-driver-iscsi), so the test stands in a node with no
    capabilities; the Node Service specs themselves are skipped.
    """
    socket = workdir / "null-node.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_IdentityServicer_to_server(_NullIdentity(driver_name), server)
    pb_grpc.add_NodeServicer_to_server(_NullNode(), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        yield f"unix://{socket}"
    finally:
        server.stop(grace=2).wait()


@contextmanager
def csi_snapshotter(
    artifacts: Artifacts, cluster: LocalCluster, plugin: Plugin, log_path: Path
) -> Iterator[None]:
    """The pinned csi-snapshotter sidecar on the plugin's socket; its log tail is printed at the end."""
    with log_path.open("wb") as log:
        sidecar = subprocess.Popen(
            [
                str(artifacts.binary("csi-snapshotter")),
                f"--kubeconfig={cluster.kubeconfig}",
                f"--csi-address={plugin.socket}",
                "--leader-election=false",
                "--timeout=60s",
                "--v=4",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield
    finally:
        sidecar.terminate()
        try:
            sidecar.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sidecar.kill()
            sidecar.wait()
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        print(f"csi-snapshotter log tail:\n{tail}")


def emulator_snapshots(process: EmulatorProcess) -> list[str]:
    return [str(r["id"]) for r in process.admin.resources() if "/snapshots/" in str(r["id"]).lower()]
