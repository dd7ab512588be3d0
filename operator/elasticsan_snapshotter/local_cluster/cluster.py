"""A real Kubernetes control plane on 127.0.0.1, for tests and the demo.

etcd, kube-apiserver (RBAC, service-account signing keys, an admin client
certificate), kube-controller-manager (PV binder, garbage collector,
namespaces, service accounts) and the upstream snapshot-controller (with the
``CSIVolumeGroupSnapshot`` feature gate on) run as child processes in a
temporary directory, on free ports. The VolumeSnapshot and
VolumeGroupSnapshot CRDs come from the external-snapshotter ``client/v8``
module in the Go module cache. Every child gets SIGKILL if this process dies, so nothing is left
running when a test run is interrupted.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from elasticsan_snapshotter.local_cluster.artifacts import Artifacts
from elasticsan_snapshotter.local_cluster.pki import Pki, create_pki

CONTEXT_NAME = "elasticsan-snapshotter-local"
SERVICE_CIDR = "10.0.0.0/24"
SNAPSHOT_CRD_FILES = (
    "snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
    "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "snapshot.storage.k8s.io_volumesnapshots.yaml",
    "groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
    "groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
    "groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
)
# external-snapshotter v8.6 still gates VolumeGroupSnapshots (Beta, default off).
SNAPSHOT_CONTROLLER_FEATURE_GATES = "CSIVolumeGroupSnapshot=true"
# kube-controller-manager controllers the project relies on: PV/PVC binding,
# ownerReference garbage collection, namespace teardown and default service accounts.
CONTROLLERS = (
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
)


class ClusterError(Exception):
    """The control plane could not start; the message is one line naming the cause."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_free(port: int, purpose: str) -> int:
    if port == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ClusterError(f"port 127.0.0.1:{port} is already in use (wanted for {purpose})") from None
    return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel kills the child when the process that started it exits.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with status {self.proc.returncode}; last log line: {self.last_log_line()}"
            )

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "(no log)"
        return lines[-1].strip() if lines else "(empty log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalCluster:
    """Start with ``start()`` (or ``with``), read ``kubeconfig``, stop with ``stop()``."""

    def __init__(
        self,
        artifacts: Artifacts,
        workdir: Path | None = None,
        *,
        apiserver_port: int = 0,
        snapshot_controller: bool = True,
        snapshot_controller_args: Sequence[str] = (),
        apiserver_args: Sequence[str] = (),
        keep_workdir: bool = False,
    ) -> None:
        self.artifacts = artifacts
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="ess-cluster-")) if workdir is None else workdir
        self._requested_apiserver_port = apiserver_port
        self._with_snapshot_controller = snapshot_controller
        self._snapshot_controller_args = list(snapshot_controller_args)
        self._apiserver_args = list(apiserver_args)
        self._keep_workdir = keep_workdir
        self.components: list[Component] = []
        self.apiserver_port = 0
        self.pki: Pki | None = None

    # -- public surface -------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def logs(self) -> dict[str, Path]:
        return {c.name: c.log_path for c in self.components}

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """Stop one component with SIGSTOP (a controller that falls behind) and go on on leaving.

        It goes on (SIGCONT) also when the block fails, so later tests meet a working cluster.
        """
        component = next((c for c in self.components if c.name == name), None)
        if component is None or component.proc is None:
            raise ClusterError(f"no running component named {name}")
        component.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            component.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        if self._own_workdir and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> Path:
        """A kubeconfig for this cluster with the given user entry (a token or a client certificate)."""
        assert self.pki is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT_NAME,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.pki.ca.cert_pem()),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user}}],
            "current-context": CONTEXT_NAME,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def check_alive(self) -> None:
        for component in self.components:
            component.check_alive()

    # -- start-up ---------------------------------------------------------

    def _start(self, deadline: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        needed = ["etcd", "kube-apiserver", "kube-controller-manager"]
        if self._with_snapshot_controller:
            needed.append("snapshot-controller")
        for name in needed:
            path = self.artifacts.binary(name)
            if not path.exists():
                raise ClusterError(f"{name} binary missing at {path}; run hack/build_binaries.py")
        self.apiserver_port = require_free(self._requested_apiserver_port, "kube-apiserver")
        self.pki = create_pki(self.workdir / "pki")
        etcd_url = self._start_etcd(deadline)
        self._start_apiserver(etcd_url, deadline)
        self.write_kubeconfig(
            self.kubeconfig,
            "admin",
            {
                "client-certificate-data": _b64(self.pki.admin.cert_pem()),
                "client-key-data": _b64(self.pki.admin.key_pem()),
            },
        )
        self._start_controller_manager(deadline)
        self._install_snapshot_crds(deadline)
        if self._with_snapshot_controller:
            self._start_snapshot_controller(deadline)

    def _component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def _spawn(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.workdir / f"{name}.log")
        component.start()
        self.components.append(component)
        return component

    def _start_etcd(self, deadline: float) -> str:
        client_port, peer_port, metrics_port = free_port(), free_port(), free_port()
        url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.artifacts.binary("etcd")),
                "--name=local",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                f"--listen-metrics-urls=http://127.0.0.1:{metrics_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        _wait(etcd, deadline, lambda: _http_ok(f"{url}/health", None))
        return url

    def _start_apiserver(self, etcd_url: str, deadline: float) -> None:
        assert self.pki is not None
        pki = self.pki
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.artifacts.binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--v=1",
                *self._apiserver_args,
            ],
        )
        _wait(apiserver, deadline, lambda: _http_ok(f"{self.server}/readyz", self._admin_ssl()))

    def _start_controller_manager(self, deadline: float) -> None:
        assert self.pki is not None
        pki = self.pki
        kubeconfig = self.write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            {
                "client-certificate-data": _b64(pki.controller_manager.cert_pem()),
                "client-key-data": _b64(pki.controller_manager.key_pem()),
            },
        )
        port = free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(self.artifacts.binary("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca.cert}",
                # Bind claims to volumes promptly; the default resync is 15 s.
                "--pvclaimbinder-sync-period=1s",
                "--v=1",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; only /healthz is read
        _wait(kcm, deadline, lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", insecure))

    def _install_snapshot_crds(self, deadline: float) -> None:
        for filename in SNAPSHOT_CRD_FILES:
            path = self.artifacts.snapshot_crds / filename
            if not path.exists():
                raise ClusterError(f"snapshot CRD {path} not found in the Go module cache")
            self.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(path.read_text()),
            )
        for filename in SNAPSHOT_CRD_FILES:
            name = yaml.safe_load((self.artifacts.snapshot_crds / filename).read_text())["metadata"]["name"]
            apiserver = self._component("kube-apiserver")

            def established(crd: str = name) -> bool:
                body = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
                conditions = body.get("status", {}).get("conditions", [])
                return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

            _wait(apiserver, deadline, established)

    def _start_snapshot_controller(self, deadline: float) -> None:
        controller = self._spawn(
            "snapshot-controller",
            [
                str(self.artifacts.binary("snapshot-controller")),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-election=false",
                # The defaults (5 QPS, burst 10) make snapshot-controller the bottleneck.
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                f"--feature-gates={SNAPSHOT_CONTROLLER_FEATURE_GATES}",
                "--v=2",
                *self._snapshot_controller_args,
            ],
        )
        # It has no readiness endpoint without leader election; wait until it has
        # started its informers (it logs that) and is still alive a moment later.
        _wait(controller, deadline, lambda: "Starting snapshot controller" in _read(controller.log_path))

    # -- raw API access for set-up (tests use their own clients) ------------

    def _admin_ssl(self) -> ssl.SSLContext:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return context

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.server}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._admin_ssl(), timeout=30) as resp:
                payload: dict[str, Any] = json.loads(resp.read() or b"{}")
                return payload
        except urllib.error.HTTPError as exc:
            if method == "POST" and exc.code == 409:
                return {}
            raise ClusterError(
                f"{method} {path} failed: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ConnectionError):
        return False


def _wait(component: Component, deadline: float, ready: Callable[[], bool]) -> None:
    while True:
        component.check_alive()
        with contextlib.suppress(ClusterError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{component.name} was not ready before the deadline; last log line: {component.last_log_line()}"
            )
        time.sleep(0.2)


def assert_is_local(kubeconfig: Path, server: str) -> None:
    """Refuse any kubeconfig whose current context is not the local cluster started here."""
    config = yaml.safe_load(kubeconfig.read_text())
    current = config.get("current-context")
    if current != CONTEXT_NAME:
        raise ClusterError(
            f"refusing kubeconfig context {current!r}: only {CONTEXT_NAME!r} may be used by tests"
        )
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    actual = clusters.get(contexts[current]["cluster"], {}).get("server")
    if actual != server:
        raise ClusterError(f"refusing kubeconfig server {actual!r}: the local control plane is {server}")


__all__ = ["CONTEXT_NAME", "ClusterError", "LocalCluster", "assert_is_local", "free_port"]
