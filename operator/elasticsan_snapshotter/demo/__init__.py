"""``elasticsan-snapshotter demo``: the whole product on this machine, in about a minute.

It starts the local control plane (etcd, kube-apiserver, kube-controller-manager,
snapshot-controller) and the Azure emulator seeded with one Elastic SAN volume,
installs the CRDs and the classes, runs the operator as its real CLI, and walks
through what a user does: a static Elastic SAN PV and claim, a file written into
it, a VolumeSnapshot that becomes ready, the file changed, a restore claim that
binds and holds the file as it was at the snapshot (checksums printed), and an
export to a managed-disk snapshot. The node stand-in mounts the volumes; without
root and loop devices the file steps are skipped with the reason. Each step prints its timing; a summary table ends the run. Everything
it started is stopped and its files removed (kept, and named, on failure).

The :class:`Walkthrough` steps are reused by the install tests, which run the
same scenario under the Helm chart's ServiceAccount.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from elasticsan_snapshotter import DRIVER_NAME

T = TypeVar("T")
# Package data: copies of the repository's crds/ (hack/render_manifests.py keeps them current).
CRD_DIR = Path(__file__).resolve().parent / "crds"
SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"
EXPORT_GROUP, EXPORT_VERSION, EXPORT_PLURAL = DRIVER_NAME, "v1alpha1", "elasticsansnapshotexports"
EXPORT_RECONCILER = "elasticsan_snapshotter.kubernetes.exporter"
GIB = 2**30


class DemoError(Exception):
    """A step did not reach its goal; the message says which and what was seen."""


# -- output --------------------------------------------------------------------------


class Progress:
    """Step lines with timings, and a live 'still waiting' line while a step waits."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self._last_note = 0.0

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def waiting(self, what: str, elapsed: float) -> None:
        if self.tty:
            self.out.write(f"\r      waiting for {what} ... {elapsed:4.0f}s")
            self.out.flush()
        elif elapsed - self._last_note >= 5.0:
            self._last_note = elapsed
            self.line(f"      still waiting for {what} ({elapsed:.0f}s)")

    def done_waiting(self) -> None:
        self._last_note = 0.0
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    progress: Progress | None = None,
    interval: float = 0.25,
) -> T:
    start = time.monotonic()
    try:
        while True:
            value = probe()
            if value:
                return value
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
            if progress is not None:
                progress.waiting(what, elapsed)
            time.sleep(interval)
    finally:
        if progress is not None:
            progress.done_waiting()


# -- the Elastic SAN the demo uses -----------------------------------------------------


@dataclass(frozen=True)
class DemoSan:
    resource_group: str = "rg-demo"
    name: str = "san-demo"
    volume_group: str = "vg-demo"
    location: str = "westeurope"
    volume: str = "data-volume"
    volume_gib: int = 10

    def seed(self) -> dict[str, Any]:
        return {
            "elasticSans": [
                {
                    "resourceGroup": self.resource_group,
                    "name": self.name,
                    "location": self.location,
                    "baseSizeTiB": 1,
                    "extendedCapacitySizeTiB": 0,
                    "volumeGroups": [
                        {
                            "name": self.volume_group,
                            "volumes": [{"name": self.volume, "sizeGiB": self.volume_gib}],
                        }
                    ],
                }
            ]
        }

    def arm_id(self, subscription: str) -> str:
        return (
            f"/subscriptions/{subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ElasticSan/elasticSans/{self.name}"
        )


def operator_env(info: Any, kubeconfig: Path, san_id: str, **extra: str) -> dict[str, str]:
    """The operator's environment against the emulator described by ``info`` (an EmulatorInfo)."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "AZURE_SUBSCRIPTION_ID": info.subscription_id,
        "AZURE_TENANT_ID": info.tenant_id,
        "AZURE_CLIENT_ID": info.client_id,
        "AZURE_CLIENT_SECRET": info.client_secret,
        "AZURE_AUTHORITY_HOST": info.authority,
        "ESS_ARM_ENDPOINT": info.endpoint,
        "ESS_CA_BUNDLE": info.ca_cert,
        "ESS_MANAGED_SANS": san_id,
        "ESS_STANDALONE": "true",
        "ESS_POLLING_INTERVAL": "0.2",
        "ESS_LOG_FORMAT": "text",
        **extra,
    }


def volume_target(info: Any, san: DemoSan) -> tuple[str, str, int]:
    """The seeded volume's iSCSI target (IQN, portal) and size, read through the Azure SDK."""
    from azure.identity import ClientSecretCredential
    from azure.mgmt.elasticsan import ElasticSanMgmtClient

    credential = ClientSecretCredential(
        info.tenant_id,
        info.client_id,
        info.client_secret,
        authority=info.authority,
        disable_instance_discovery=True,
        connection_verify=info.ca_cert,
    )
    client = ElasticSanMgmtClient(
        credential, info.subscription_id, base_url=info.endpoint, connection_verify=info.ca_cert
    )
    with credential, client:
        volume = client.volumes.get(san.resource_group, san.name, san.volume_group, san.volume)
    target = volume.storage_target
    return target.target_iqn, f"{target.target_portal_hostname}:{target.target_portal_port}", volume.size_gi_b


def export_reconciler_present() -> bool:
    return importlib.util.find_spec(EXPORT_RECONCILER) is not None


def export_crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml")) if CRD_DIR.is_dir() else []


# -- the scenario ----------------------------------------------------------------------


@dataclass
class Walkthrough:
    """The user's path through the product, step by step, with the Kubernetes Python client.

    ``api`` is a ``kubernetes.client.ApiClient`` with rights to create the demo's objects;
    ``volume`` is the Elastic SAN volume's storage target (``iqn``, ``portal``).
    """

    api: Any
    namespace: str
    iqn: str
    portal: str
    size: str = "10Gi"
    progress: Progress | None = None
    timeout: float = 120.0
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        from kubernetes import client as k8s

        # Typed as Any: the demo passes plain dicts, as users write manifests.
        self.core: Any = k8s.CoreV1Api(self.api)
        self.storage: Any = k8s.StorageV1Api(self.api)
        self.custom: Any = k8s.CustomObjectsApi(self.api)
        self.storage_class = f"elasticsan-{self.suffix}"
        self.snapshot_class = f"elasticsan-snapshot-{self.suffix}"
        self.static_pv = f"esan-static-{self.suffix}"

    def _wait(self, what: str, probe: Callable[[], T | None]) -> T:
        return wait_for(what, probe, timeout=self.timeout, progress=self.progress)

    def create_namespace(self) -> str:
        self.core.create_namespace({"metadata": {"name": self.namespace}})
        return self.namespace

    def install_classes(self) -> str:
        self.storage.create_storage_class(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": self.storage_class},
                "provisioner": DRIVER_NAME,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            }
        )
        self.custom.create_cluster_custom_object(
            SNAPSHOT_GROUP,
            SNAPSHOT_VERSION,
            "volumesnapshotclasses",
            {
                "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
                "kind": "VolumeSnapshotClass",
                "metadata": {
                    "name": self.snapshot_class,
                    "labels": {"velero.io/csi-volumesnapshot-class": "true"},
                },
                "driver": DRIVER_NAME,
                "deletionPolicy": "Delete",
            },
        )
        return f"StorageClass {self.storage_class}, VolumeSnapshotClass {self.snapshot_class}"

    def static_volume(self) -> str:
        """An existing Elastic SAN volume as users attach it today: a static iSCSI PV and a claim."""
        self.core.create_persistent_volume(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": self.static_pv},
                "spec": {
                    "capacity": {"storage": self.size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": self.storage_class,
                    "csi": {
                        "driver": "iscsi.csi.k8s.io",
                        "volumeHandle": f"iscsi-{self.static_pv}",
                        "volumeAttributes": {
                            "targetPortal": self.portal,
                            "portals": "[]",
                            "iqn": self.iqn,
                            "lun": "0",
                            "iscsiInterface": "default",
                            "discoveryCHAPAuth": "false",
                            "sessionCHAPAuth": "false",
                        },
                    },
                },
            }
        )
        self._claim("data", volume_name=self.static_pv)
        self._wait("claim data to be Bound", lambda: self._bound("data"))
        return f"PV {self.static_pv} -> PVC {self.namespace}/data Bound"

    def snapshot(self) -> dict[str, Any]:
        self.custom.create_namespaced_custom_object(
            SNAPSHOT_GROUP,
            SNAPSHOT_VERSION,
            self.namespace,
            "volumesnapshots",
            {
                "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
                "kind": "VolumeSnapshot",
                "metadata": {"name": "snap"},
                "spec": {
                    "volumeSnapshotClassName": self.snapshot_class,
                    "source": {"persistentVolumeClaimName": "data"},
                },
            },
        )

        def ready() -> dict[str, Any] | None:
            vs: dict[str, Any] = self.custom.get_namespaced_custom_object(
                SNAPSHOT_GROUP, SNAPSHOT_VERSION, self.namespace, "volumesnapshots", "snap"
            )
            status = vs.get("status") or {}
            if (status.get("error") or {}).get("message"):
                raise DemoError(f"VolumeSnapshot snap failed: {status['error']['message']}")
            return vs if status.get("readyToUse") else None

        return self._wait("VolumeSnapshot snap to be readyToUse", ready)

    def content_of(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        name = snapshot["status"]["boundVolumeSnapshotContentName"]
        content: dict[str, Any] = self.custom.get_cluster_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", name
        )
        return content

    def restore(self) -> Any:
        self._claim("restored", snapshot="snap")
        return self._wait("claim restored to be Bound", lambda: self._bound("restored"))

    def export(self) -> dict[str, Any]:
        self.custom.create_namespaced_custom_object(
            EXPORT_GROUP,
            EXPORT_VERSION,
            self.namespace,
            EXPORT_PLURAL,
            {
                "apiVersion": f"{EXPORT_GROUP}/{EXPORT_VERSION}",
                "kind": "ElasticSanSnapshotExport",
                "metadata": {"name": "snap-export"},
                "spec": {"source": {"volumeSnapshotName": "snap"}, "deletionPolicy": "Delete"},
            },
        )

        def succeeded() -> dict[str, Any] | None:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                EXPORT_GROUP, EXPORT_VERSION, self.namespace, EXPORT_PLURAL, "snap-export"
            )
            status = found.get("status") or {}
            if status.get("phase") == "Failed":
                raise DemoError(f"export snap-export failed: {(status.get('error') or {}).get('message')}")
            return found if status.get("phase") == "Succeeded" else None

        return self._wait("export snap-export to succeed", succeeded)

    def _claim(self, name: str, *, volume_name: str | None = None, snapshot: str | None = None) -> None:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": self.size}},
            "storageClassName": self.storage_class,
        }
        if volume_name:
            spec["volumeName"] = volume_name
        if snapshot:
            spec["dataSource"] = {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": snapshot}
        self.core.create_namespaced_persistent_volume_claim(
            self.namespace,
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec},
        )

    def _bound(self, name: str) -> Any:
        pvc = self.core.read_namespaced_persistent_volume_claim(name, self.namespace)
        return pvc if pvc.status.phase == "Bound" else None


def install_crds(
    api: Any, files: list[Path], progress: Progress | None = None, timeout: float = 60.0
) -> list[str]:
    """Create each CRD in ``files`` (existing ones are left alone) and wait until it is Established."""
    import yaml
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    ext: Any = k8s.ApiextensionsV1Api(api)
    names: list[str] = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            names.append(doc["metadata"]["name"])
    for name in names:

        def established(crd: str = name) -> bool:
            conditions = ext.read_custom_resource_definition(crd).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(f"CRD {name} to be established", established, timeout=timeout, progress=progress)
    return names


# -- files in the volumes ---------------------------------------------------------------


class DemoFiles:
    """A file in the static volume, written, snapshotted, changed, and read back from the restore."""

    def __init__(self, walk: Walkthrough, admin: Any, kubelet_root: Path, stack: ExitStack) -> None:
        from elasticsan_snapshotter.local_cluster.node import NodeStandIn, unavailable

        self.walk = walk
        self.why_not = unavailable()
        self.node = NodeStandIn(admin, kubelet_root)
        self.mounts: dict[str, Any] = {}
        self.sums: list[str] = []
        stack.callback(self.node.close)

    def step(self, steps: Steps, title: str, action: Callable[[], str]) -> None:
        if self.why_not is not None:
            steps.skip(title, self.why_not)
            return
        with steps.step(title) as detail:
            detail.append(action())

    def _mount(self, pv_name: str) -> Any:
        if pv_name not in self.mounts:
            pv = self.walk.core.read_persistent_volume(pv_name)
            self.mounts[pv_name] = self.node.publish(pv_name, pv.spec.csi.volume_attributes)
        return self.mounts[pv_name]

    def write(self, pv_name: str, text: str) -> str:
        mount = self._mount(pv_name)
        self.sums.append(mount.write(DEMO_FILE, f"{text}: {uuid.uuid4()}\n".encode()))
        return f"{DEMO_FILE} sha256 {self.sums[-1]}"

    def compare(self, pv_name: str) -> str:
        got = self._mount(pv_name).sha256(DEMO_FILE)
        snapshot, changed = self.sums
        if got != snapshot:
            raise DemoError(f"the restored {DEMO_FILE} has sha256 {got}, the snapshot's was {snapshot}")
        return f"restored sha256 {got} = at the snapshot; changed since: {changed}"


# -- the command -----------------------------------------------------------------------


@dataclass
class StepResult:
    title: str
    outcome: str  # "ok", "skipped" or "FAILED"
    seconds: float
    detail: str


class Steps:
    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.results: list[StepResult] = []

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Run one step; the body appends its one-line detail to the yielded list."""
        number = len(self.results) + 1
        self.progress.line(f"[{number}/{self.total}] {title} ...")
        detail: list[str] = []
        start = time.monotonic()
        try:
            yield detail
        except Exception as exc:
            seconds = time.monotonic() - start
            self.results.append(StepResult(title, "FAILED", seconds, f"{type(exc).__name__}: {exc}"))
            self.progress.line(f"      FAILED after {seconds:.1f}s: {exc}")
            raise
        seconds = time.monotonic() - start
        self.results.append(StepResult(title, "ok", seconds, "; ".join(detail)))
        self.progress.line(f"      ok in {seconds:.1f}s: {'; '.join(detail)}")

    def skip(self, title: str, why: str) -> None:
        number = len(self.results) + 1
        self.results.append(StepResult(title, "skipped", 0.0, why))
        self.progress.line(f"[{number}/{self.total}] {title}: SKIPPED: {why}")

    def summary(self) -> str:
        rows = [("Step", "Result", "Time", "Detail")] + [
            (r.title, r.outcome, f"{r.seconds:.1f}s", r.detail) for r in self.results
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for index, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
            if index == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
        return "\n".join(lines)


STEP_TITLES = (
    "Start the local control plane",
    "Start the Azure emulator",
    "Install CRDs and classes",
    "Start the operator",
    "Static Elastic SAN PV and claim",
    "Write a file into the volume",
    "VolumeSnapshot ready",
    "Change the file",
    "Restore claim bound",
    "Restored file is the snapshot's",
    "Export succeeded",
)
DEMO_FILE = "hello.txt"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole product locally: control plane, emulator, operator, snapshot, restore, export",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds each step may wait (default 120)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory and its logs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    progress = Progress()
    steps = Steps(progress, len(STEP_TITLES))
    workdir = Path(tempfile.mkdtemp(prefix="ess-demo-"))
    progress.line(f"elasticsan-snapshotter demo (work directory {workdir})")
    started = time.monotonic()
    failed = False
    try:
        with ExitStack() as stack:
            _walk(steps, progress, workdir, stack, float(args.timeout))
    except Exception as exc:
        failed = True
        progress.line(f"\nerror: the demo failed: {exc}")
    progress.line(f"\nSummary ({time.monotonic() - started:.1f}s in all):\n{steps.summary()}")
    if failed or args.keep:
        progress.line(f"Logs and state kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    skipped = [r for r in steps.results if r.outcome == "skipped"]
    verdict = "with skipped steps (see above)" if skipped else "every step passed"
    progress.line(f"Demo finished: {verdict}; everything it started is stopped.")
    return 0


def _walk(steps: Steps, progress: Progress, workdir: Path, stack: ExitStack, timeout: float) -> None:
    from kubernetes import config

    from elasticsan_snapshotter.emulator.process import EmulatorProcess
    from elasticsan_snapshotter.local_cluster import LocalCluster, discover
    from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

    san = DemoSan()
    with steps.step(STEP_TITLES[0]) as detail:
        artifacts = discover()
        cluster = LocalCluster(artifacts, workdir / "cluster", keep_workdir=True)
        cluster.start()
        stack.callback(cluster.stop)
        detail.append(f"Kubernetes {artifacts.versions['KUBERNETES_VERSION']} at {cluster.server}")
    with steps.step(STEP_TITLES[1]) as detail:
        (workdir / "emulator").mkdir()
        seed = workdir / "emulator" / "seed.json"
        seed.write_text(json.dumps(san.seed()))
        emulator = EmulatorProcess(
            workdir / "emulator" / "state",
            seed=seed,
            extra_args=("--lro-retry-after", "0", "--export-seconds", "3"),
        )
        info = emulator.start()
        stack.callback(emulator.stop)
        iqn, portal, size_gib = volume_target(info, san)
        detail.append(f"Elastic SAN {san.name} with volume {san.volume} ({size_gib} GiB) at {info.endpoint}")
    k8s_config: Any = config
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    stack.callback(api.close)
    walk = Walkthrough(
        api,
        namespace=f"demo-{uuid.uuid4().hex[:6]}",
        iqn=iqn,
        portal=portal,
        size=f"{san.volume_gib}Gi",
        progress=progress,
        timeout=timeout,
    )
    export_crds = export_crd_files()
    with steps.step(STEP_TITLES[2]) as detail:
        crds = install_crds(api, export_crds, progress)
        detail.append(f"CRDs {', '.join(crds) or '(none)'}; {walk.install_classes()}")
        walk.create_namespace()
    with steps.step(STEP_TITLES[3]) as detail:
        operator = OperatorProcess(
            operator_env(info, cluster.kubeconfig, san.arm_id(info.subscription_id)), workdir / "operator.log"
        )
        stack.callback(operator.stop)
        operator.start()
        detail.append(
            f"elasticsan-snapshotter operator, healthy on :{operator.health_port}, log operator.log"
        )
    with steps.step(STEP_TITLES[4]) as detail:
        detail.append(walk.static_volume())
    files = DemoFiles(walk, emulator.admin, workdir / "kubelet", stack)
    files.step(steps, STEP_TITLES[5], lambda: files.write(walk.static_pv, "before the snapshot"))
    with steps.step(STEP_TITLES[6]) as detail:
        vs = walk.snapshot()
        content = walk.content_of(vs)
        handle = content["status"]["snapshotHandle"]
        detail.append(f"restoreSize {vs['status']['restoreSize']}, handle {handle}")
    files.step(steps, STEP_TITLES[7], lambda: files.write(walk.static_pv, "after the snapshot"))
    with steps.step(STEP_TITLES[8]) as detail:
        restored = walk.restore()
        new_volume = restored.spec.volume_name
        detail.append(f"PVC {walk.namespace}/restored Bound to PV {new_volume} (new Elastic SAN volume)")
    files.step(steps, STEP_TITLES[9], lambda: files.compare(new_volume))
    if not export_crds:
        steps.skip(STEP_TITLES[10], "the ElasticSanSnapshotExport CRD is not among the demo's manifests")
    elif not export_reconciler_present():
        steps.skip(STEP_TITLES[10], f"the export reconciler ({EXPORT_RECONCILER}) is not in this build")
    else:
        with steps.step(STEP_TITLES[10]) as detail:
            export = walk.export()
            status = export["status"]
            detail.append(
                f"managed-disk snapshot {status.get('diskSnapshotId')} ({status.get('sizeGiB')} GiB)"
            )
    progress.line("Cleaning up: stopping the operator, the emulator and the control plane ...")
