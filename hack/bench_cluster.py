"""The processes and objects of hack/bench.py: API access, the two arms, the emulator's seed.

Arm "operator": ``elasticsan-snapshotter operator``. Arm "sidecar": the upstream csi-snapshotter
sidecar (built like the other binaries) in front of ``elasticsan-snapshotter csi-controller``.
Both run against the same local control plane and the same emulator, with the same Azure settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp

from elasticsan_snapshotter.demo import operator_env
from elasticsan_snapshotter.emulator.process import EmulatorInfo
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
  - level: Metadata
"""
AZURE_SETTINGS = {
    # Both arms alike: pacing out of the way of a non-throttling emulator, quick polls.
    "ESS_WRITE_RATE": "1000",
    "ESS_WRITE_BURST": "1000",
    "ESS_MAX_CONCURRENCY": "16",
    "ESS_POLLING_INTERVAL": "0.2",
    "ESS_LOG_FORMAT": "text",
}
SIDECAR_FLAGS = ("--kube-api-qps=1000", "--kube-api-burst=1000", "--worker-threads=16", "--timeout=60s")
SNAPSHOT_CONTROLLER_FLAGS = ("--kube-api-qps=1000", "--kube-api-burst=1000")


def audit_args(workdir: Path) -> tuple[list[str], Path]:
    policy = workdir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    log = workdir / "audit.jsonl"
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        "--audit-log-maxsize=0",
    ], log


def seed_document(resource_group: str, san: str, volumes: int) -> dict[str, Any]:
    return {
        "elasticSans": [
            {
                "resourceGroup": resource_group,
                "name": san,
                "location": "westeurope",
                "baseSizeTiB": 4,
                "extendedCapacitySizeTiB": 0,
                "volumeGroups": [
                    {
                        "name": "vg1",
                        "volumes": [{"name": f"vol-{i:04d}", "sizeGiB": 1} for i in range(volumes)],
                    }
                ],
            }
        ]
    }


class Api:
    """JSON over HTTPS to the local API server as its admin, through one pooled session."""

    def __init__(self, cluster: LocalCluster, concurrency: int = 16) -> None:
        assert cluster.pki is not None
        pki = cluster.pki
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        self._server = cluster.server
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=concurrency),
            headers={"User-Agent": "ess-bench/1", "Accept": "application/json"},
        )
        self._limit = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = ""
    ) -> dict[str, Any]:
        content_type = content_type or (
            "application/merge-patch+json" if method == "PATCH" else "application/json"
        )
        async with self._limit:
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": content_type} if data else {}
            async with self._session.request(method, self._server + path, data=data, headers=headers) as resp:
                text = await resp.text()
                if resp.status == 409 and method == "POST":
                    return {}
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]}")
                return dict(json.loads(text)) if text else {}

    async def all(self, calls: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.request(m, p, b) for m, p, b in calls)))

    async def watch_ready(self, namespace: str, ready: dict[str, float], uids: dict[str, str]) -> None:
        """Record when each VolumeSnapshot of ``namespace`` is first seen ready; runs until cancelled."""
        path = f"{SNAPSHOTS}/namespaces/{namespace}/volumesnapshots"
        version = (await self.request("GET", path)).get("metadata", {}).get("resourceVersion", "")
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:
            query = f"?watch=1&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds=3600"
            try:
                async with self._session.get(self._server + path + query, timeout=timeout) as resp:
                    async for line in resp.content:
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        meta = obj.get("metadata") or {}
                        version = meta.get("resourceVersion", version)
                        if event.get("type") == "ERROR":
                            version = ""
                            break
                        name = meta.get("name")
                        if name and (obj.get("status") or {}).get("readyToUse") and name not in ready:
                            ready[name] = time.time()
                            uids[name] = meta.get("uid", "")
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)


def static_pv(name: str, handle: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "csi": {
                "driver": "iscsi.csi.k8s.io",
                "volumeHandle": handle,
                "volumeAttributes": {
                    "targetPortal": "192.0.2.1:3260",
                    "iqn": f"iqn.bench:{name}",
                    "lun": "0",
                },
            },
        },
    }


def claim(name: str, namespace: str, pv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": pv,
        },
    }


def snapshot_class(driver: str) -> dict[str, Any]:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": driver},
        "driver": driver,
        "deletionPolicy": "Delete",
    }


def volume_snapshot(name: str, claim_name: str, class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {"volumeSnapshotClassName": class_name, "source": {"persistentVolumeClaimName": claim_name}},
    }


def ready_content(name: str, driver: str, handle: str, namespace: str, uid: str) -> dict[str, Any]:
    """A dynamic content as snapshot-controller and a driver leave it once ready (Retain: nobody deletes it)."""
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "deletionPolicy": "Retain",
            "source": {"volumeHandle": handle},
            "volumeSnapshotClassName": driver,
            "volumeSnapshotRef": {"name": name, "namespace": namespace, "uid": uid},
        },
    }


class Arm:
    """One side of the comparison, started fresh for every scenario run."""

    name = ""

    def start(self, driver: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> dict[str, int | None]:
        raise NotImplementedError


class OperatorArm(Arm):
    name = "operator"

    def __init__(
        self, info: EmulatorInfo, cluster: LocalCluster, san_id: str, logs: Path, python: str
    ) -> None:
        self.info, self.cluster, self.san_id, self.logs, self.python = info, cluster, san_id, logs, python
        self.process: OperatorProcess | None = None
        self._runs = 0

    def start(self, driver: str) -> None:
        self._runs += 1
        env = operator_env(
            self.info, self.cluster.kubeconfig, self.san_id, ESS_DRIVER_NAME=driver, **AZURE_SETTINGS
        )
        log = self.logs / f"operator-{self._runs}.log"
        self.process = OperatorProcess(env, log, startup_timeout=180, python=self.python)
        self.process.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def pids(self) -> dict[str, int | None]:
        return {"operator": self.process.pid if self.process else None}


class SidecarArm(Arm):
    name = "sidecar"

    def __init__(
        self,
        info: EmulatorInfo,
        cluster: LocalCluster,
        artifacts: Artifacts,
        san_id: str,
        logs: Path,
        python: str,
    ) -> None:
        self.info, self.cluster, self.artifacts, self.san_id = info, cluster, artifacts, san_id
        self.logs, self.python = logs, python
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []
        self._socket_dir: Path | None = None
        self._runs = 0

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        log = (self.logs / f"{name}-{self._runs}.log").open("wb")
        self._files.append(log)
        self._procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env or os.environ)
        )

    def start(self, driver: str) -> None:
        self._runs += 1
        # Unix socket paths must stay short.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="ess-bench-", dir="/tmp"))
        socket = self._socket_dir / "csi.sock"
        env = {
            **os.environ,
            "ESS_DRIVER_NAME": driver,
            "AZURE_SUBSCRIPTION_ID": self.info.subscription_id,
            "ESS_ARM_ENDPOINT": self.info.endpoint,
            "AZURE_AUTHORITY_HOST": self.info.authority,
            "ESS_CA_BUNDLE": self.info.ca_cert,
            "AZURE_TENANT_ID": self.info.tenant_id,
            "AZURE_CLIENT_ID": self.info.client_id,
            "AZURE_CLIENT_SECRET": self.info.client_secret,
            "ESS_MANAGED_SANS": self.san_id,
            "ESS_METRICS_PORT": "0",
            **AZURE_SETTINGS,
        }
        self._spawn(
            "csi-controller",
            [
                self.python,
                "-m",
                "elasticsan_snapshotter",
                "csi-controller",
                "--endpoint",
                f"unix://{socket}",
            ],
            env,
        )
        deadline = time.monotonic() + 120
        while not socket.exists():
            if self._procs["csi-controller"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"csi-controller did not start; see {self.logs}")
            time.sleep(0.1)
        self._spawn(
            "csi-snapshotter",
            [
                str(self.artifacts.binary("csi-snapshotter")),
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--csi-address={socket}",
                "--leader-election=false",
                "--v=2",
                *SIDECAR_FLAGS,
            ],
        )

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        for log in self._files:
            log.close()
        self._files.clear()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def pids(self) -> dict[str, int | None]:
        return {name: proc.pid for name, proc in self._procs.items()}
