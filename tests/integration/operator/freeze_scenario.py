"""Building blocks for FilesystemConsistent groups through the operator: two node stand-ins, each
with a real freeze agent (a process on 127.0.0.1) under its kubelet root, the agents' pods as the
operator finds them (Pods in the API, Running, with the agent's port), application pods whose
UIDs name the mounts, a writer alternating between two volumes, and what a member snapshot holds.

There is no kubelet: a Pod here is only an API object, and the node stand-in mounts the claim
where kubelet would for that pod's UID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
from group_scenario import Groups
from kubernetes.client.rest import ApiException
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, StartOperator, unique_name

from elasticsan_snapshotter.domain.freeze import LeaseState
from elasticsan_snapshotter.emulator.process import AdminClient, EmulatorProcess
from elasticsan_snapshotter.local_cluster.node import Mount, NodeStandIn
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from freeze_support import AgentProcess, Node, Pki, Writer, force_thaw, last_record
from waiting import wait_for

FREEZE_LEASE = "elasticsan.snapshotter.dev/freeze-lease"
CONSISTENCY = "elasticsan.snapshotter.dev/consistency"
FREEZE_WINDOW = "elasticsan.snapshotter.dev/freeze-window-seconds"
FREEZE_RETRY = "elasticsan.snapshotter.dev/freeze-retry"
AGENT_LABELS = {"app.kubernetes.io/component": "freeze-agent"}
NODES = ("node-a", "node-b")
LABELS = {"app": "db"}


def create_pod(kube: Kube, namespace: str, body: dict[str, Any]) -> Any:
    """Create a Pod; a fresh namespace's default ServiceAccount may take a moment to appear."""

    def create() -> Any:
        try:
            return kube.core.create_namespaced_pod(namespace, body)
        except ApiException as exc:
            if exc.status == 403 and "serviceaccount" in str(exc.body).lower():
                return None
            raise

    return wait_for(f"pod {namespace}/{body['metadata']['name']} to be created", create, 30)


def pod_body(
    name: str, node: str, *, claim: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node,
        "automountServiceAccountToken": False,
        "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
    }
    if claim:
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def agent_pod(kube: Kube, namespace: str, node: str, port: int) -> None:
    """The agent's pod as the DaemonSet would make it, reported Running at 127.0.0.1."""
    body = pod_body(f"freeze-agent-{node}", node, labels=AGENT_LABELS)
    body["spec"]["containers"][0]["ports"] = [{"name": "freeze", "containerPort": port}]
    created = create_pod(kube, namespace, body)
    kube.core.patch_namespaced_pod_status(
        created.metadata.name,
        namespace,
        {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}},
    )


def tls_dir(pki: Pki, directory: Path) -> Path:
    """The operator's client certificate laid out as the chart mounts its Secret."""
    directory.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (pki.operator.cert, "tls.crt"),
        (pki.operator.key, "tls.key"),
        (pki.operator.ca, "ca.crt"),
    ):
        shutil.copyfile(source, directory / name)
    return directory


@dataclass
class Workload:
    """Two claims, each used by a pod on its own node and mounted there, and one writer on both."""

    claims: dict[str, str]
    """node → claim"""
    handles: dict[str, str]
    """volume handle → node"""
    mounts: dict[str, Mount]
    writer: Writer


@contextlib.contextmanager
def workload(
    kube: Kube,
    namespace: str,
    claims: list[tuple[str, Any]],
    nodes: dict[str, Node],
    stand_ins: dict[str, NodeStandIn],
) -> Iterator[Workload]:
    mounts: dict[str, Mount] = {}
    handles: dict[str, str] = {}
    writer: Writer | None = None
    try:
        for (claim, _), node in zip(claims, NODES, strict=True):
            pod = create_pod(kube, namespace, pod_body(f"app-{node}", node, claim=claim))
            pvc = kube.core.read_namespaced_persistent_volume_claim(claim, namespace)
            pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
            handles[pv.spec.csi.volume_handle] = node
            mounts[node] = stand_ins[node].publish(
                pv.metadata.name, pv.spec.csi.volume_attributes, pod_uid=pod.metadata.uid
            )
        writer = nodes["node-a"].start_writer(mounts["node-a"].path, mounts["node-b"].path)
        yield Workload({n: c for (c, _), n in zip(claims, NODES, strict=True)}, handles, mounts, writer)
    finally:
        # Thaw first: a writer blocked on a frozen file system cannot even die.
        for mount in mounts.values():
            force_thaw(mount.path)
        if writer is not None:
            writer.process.send_signal(signal.SIGKILL)
            writer.process.wait(timeout=30)
        for node, mount in mounts.items():
            stand_ins[node].unpublish(mount)


def last_records(
    esan: ElasticSanMgmtClient, admin: AdminClient, content: dict[str, Any], scratch: Path
) -> dict[str, int | None]:
    """Volume handle → the last complete record in its member snapshot, read from a volume restored
    from that snapshot in the emulator (mounting replays the journal, as a restore would)."""
    found: dict[str, int | None] = {}
    for entry in content["status"]["volumeSnapshotInfoList"]:
        snapshot = esan.volume_snapshots.get(
            RESOURCE_GROUP, SAN, VOLUME_GROUP, entry["snapshotHandle"].split("#")[-1]
        )
        name = unique_name("restored")
        volume = esan.volumes.begin_create(
            RESOURCE_GROUP,
            SAN,
            VOLUME_GROUP,
            name,
            {
                "properties": {
                    "sizeGiB": 10,
                    "creationData": {"createSource": "VolumeSnapshot", "sourceId": snapshot.id},
                }
            },
        ).result()
        try:
            target = volume.storage_target
            login = admin.iscsi_login(
                target.target_iqn, f"{target.target_portal_hostname}:{target.target_portal_port}"
            )
            found[entry["volumeHandle"]] = last_record(Path(login["path"]), scratch)
        finally:
            esan.volumes.begin_delete(RESOURCE_GROUP, SAN, VOLUME_GROUP, name).result()
    return found


def member_puts(access_log: Path, content: dict[str, Any]) -> list[tuple[float, float]]:
    """(received, answered) of every accepted PUT of the group's member snapshots, from the emulator."""
    names = {e["snapshotHandle"].split("#")[-1] for e in content["status"]["volumeSnapshotInfoList"]}
    puts = []
    for line in access_log.read_text().splitlines():
        entry = json.loads(line)
        if (
            entry["method"] == "PUT"
            and entry["status"] in (200, 201)
            and entry["path"].rsplit("/", 1)[-1] in names
        ):
            puts.append((float(entry["start"]), float(entry["end"])))
    return puts


def recorded_lease(content: dict[str, Any] | None) -> dict[str, Any] | None:
    raw = ((content or {}).get("metadata", {}).get("annotations") or {}).get(FREEZE_LEASE)
    return json.loads(raw) if raw else None


def scratch_dir(base: Path) -> Path:
    path = base / f"restores-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


@dataclass
class Rig:
    pki: Pki
    nodes: dict[str, Node]
    stand_ins: dict[str, NodeStandIn]
    agents: dict[str, AgentProcess]
    start: StartOperator
    env: dict[str, str]
    operator: OperatorProcess = field(init=False)

    def __post_init__(self) -> None:
        self.operator = self.start(**self.env)

    def restart_operator(self) -> None:
        self.operator.kill()
        self.operator = self.start(**self.env)

    def lease_state(self, node_name: str, lease_id: str) -> LeaseState:
        async def read() -> LeaseState:
            client = self.agents[node_name].client()
            try:
                return (await client.get_lease(lease_id)).state
            finally:
                await client.close()

        return asyncio.run(read())


def frozen_groups(
    kube: Kube, namespace: str, source_volume: Callable[..., Any], **parameters: str
) -> tuple[Groups, str, list[tuple[str, Any]]]:
    """A FilesystemConsistent class with ``parameters`` and two labelled claims on their own volumes."""
    groups = Groups(kube, namespace)
    storage_class, frozen = groups.classes("Delete", consistency="FilesystemConsistent", **parameters)
    return groups, frozen, groups.labelled_claims(source_volume, storage_class, 2, LABELS)


@contextlib.contextmanager
def slow_azure(emulator: EmulatorProcess, lro_seconds: float) -> Iterator[None]:
    """Every long-running operation the emulator starts meanwhile takes ``lro_seconds``."""
    emulator.admin.update_settings(lroSeconds=lro_seconds)
    try:
        yield
    finally:
        emulator.admin.update_settings(lroSeconds=0)


def content_of(groups: Groups, name: str) -> dict[str, Any] | None:
    vgs = groups.get(name) or {}
    bound = (vgs.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
    return groups.content(bound) if bound else None


def group_level(groups: Groups, name: str) -> str | None:
    return (((groups.get(name) or {}).get("metadata") or {}).get("annotations") or {}).get(CONSISTENCY)


def annotations_of(groups: Groups, name: str) -> dict[str, str]:
    return dict(((content_of(groups, name) or {}).get("metadata", {}).get("annotations")) or {})


def published(groups: Groups, name: str) -> dict[str, Any]:
    """The group's content once the operator published it (with the level achieved)."""

    def done() -> dict[str, Any] | None:
        content = content_of(groups, name)
        annotations = (content or {}).get("metadata", {}).get("annotations") or {}
        return content if CONSISTENCY in annotations else None

    return wait_for(f"group {name} to be published", done, 120, interval=0.1)


def cut(groups: Groups, name: str, group_class: str) -> dict[str, Any]:
    """Take a group and return its content once the operator published it."""
    groups.create(name, group_class, LABELS)
    return published(groups, name)


def cutting(groups: Groups, name: str) -> dict[str, Any]:
    """The lease record once the operator is cutting the group inside its freeze window."""

    def in_cut() -> dict[str, Any] | None:
        held = recorded_lease(content_of(groups, name))
        return held if held and held["phase"] == "Cut" else None

    return wait_for(f"the cut of {name} to begin under a recorded lease", in_cut, 60, interval=0.05)
