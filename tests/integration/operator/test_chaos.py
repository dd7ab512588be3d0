"""Chaos: kills at random moments, Azure faults, deletions, restores and exports cut short.

What the operator promises under all of it, checked on the API server and in the emulator:
one Azure snapshot per VolumeSnapshot, none left after deletion, no volume without a claim or
a PV, nothing stuck with a finalizer, no ready content still marked being-created, and no
``status.error`` for faults that pass. The story is random; its seed is printed and
``ESS_CHAOS_SEED`` replays it. The second test SIGKILLs the active one of two replicas
mid-burst and prints how long the standby took to take over.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from export_scenario import Exports, install_crd
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    StartOperator,
    create_in_flight,
    snapshots_of,
    static_claim,
    unique_name,
    wait_for,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
PROVISIONING = "elasticsan.snapshotter.dev/provisioning-protection"
FAULTS = "put:volumeSnapshots:429:0.2,put:*:500:0.05,get:volumeSnapshots:500:0.05"


@pytest.fixture
def chaos_seed() -> int:
    value = int(os.environ.get("ESS_CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"chaos seed {value}; replay with ESS_CHAOS_SEED={value}")
    return value


@pytest.fixture
def azure_settings(emulator: EmulatorProcess) -> Iterator[Callable[..., None]]:
    before = emulator.admin.update_settings()

    def update(**values: Any) -> None:
        emulator.admin.update_settings(**values)

    yield update
    emulator.admin.clear_faults()
    emulator.admin.update_settings(lroSeconds=before["lroSeconds"], exportSeconds=before["exportSeconds"])


def classes_and_claims(kube: Kube, namespace: str, volumes: list[Any], prefix: str) -> tuple[str, list[str]]:
    """Our StorageClass and VolumeSnapshotClass, and a bound static claim per Elastic SAN volume."""
    storage_class, snapshot_class = unique_name(prefix), unique_name(f"{prefix}-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, "Delete")
    claims = [f"data-{i}" for i in range(len(volumes))]
    for volume, claim in zip(volumes, claims, strict=True):
        static_claim(kube, namespace, volume, storage_class, claim)
    return snapshot_class, claims


def content_of(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    vs = kube.snapshot(namespace, name) or {}
    bound = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
    return kube.content(bound) if bound else None


def azure_snapshots(esan: ElasticSanMgmtClient) -> set[str]:
    return {s.name for s in esan.volume_snapshots.list_by_volume_group(RESOURCE_GROUP, SAN, VOLUME_GROUP)}


def azure_volumes(esan: ElasticSanMgmtClient) -> set[str]:
    return {v.name for v in esan.volumes.list_by_volume_group(RESOURCE_GROUP, SAN, VOLUME_GROUP)}


def assert_converged(kube: Kube, esan: ElasticSanMgmtClient, namespace: str, names: list[str]) -> None:
    uids = set()
    for name in names:
        vs = kube.snapshot(namespace, name)
        assert vs is not None
        uids.add(vs["metadata"]["uid"])
        content = content_of(kube, namespace, name)
        assert content is not None
        status = content.get("status") or {}
        assert status.get("readyToUse") is True
        assert "error" not in status, f"a passing fault surfaced as status.error: {status}"
        assert BEING_CREATED not in (content["metadata"].get("annotations") or {})
    ours = {s for s in azure_snapshots(esan) if s.removeprefix("snapshot-") in uids}
    assert ours == {f"snapshot-{uid}" for uid in uids}, "exactly one Azure snapshot per VolumeSnapshot"


def test_kills_faults_deletions_restores_and_exports_converge(
    chaos_seed: int,
    azure_settings: Callable[..., None],
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    api_client: k8s.ApiClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    rng = random.Random(chaos_seed)
    install_crd(api_client)
    exports = Exports(api_client)
    snapshot_class, claims = classes_and_claims(
        kube, namespace, [source_volume(10) for _ in range(3)], "chaos"
    )
    storage_class = unique_name("chaos-restore")
    kube.create_storage_class(storage_class)
    azure_settings(lroSeconds=1)
    emulator.admin.set_faults(FAULTS)
    operator = start_operator()

    def kill_at_random(times: int) -> OperatorProcess:
        nonlocal operator
        for _ in range(times):
            time.sleep(rng.uniform(0.2, 2.5))
            operator.kill()
            operator = start_operator()
        return operator

    # 1. Many snapshots over many volumes, the operator killed at random moments.
    names = [f"snap-{i}" for i in range(12)]
    for i, name in enumerate(names):
        kube.create_snapshot(namespace, name, claims[i % len(claims)], snapshot_class=snapshot_class)
    kill_at_random(3)
    for name in names:
        kube.wait_snapshot_ready(namespace, name, timeout=240)
    assert_converged(kube, esan, namespace, names)

    # 2. Deletion, with kills.
    keep, doomed = names[0], names[1:]
    doomed_uids = {kube.snapshot(namespace, n)["metadata"]["uid"] for n in doomed}  # type: ignore[index]
    contents = {content_of(kube, namespace, n)["metadata"]["name"] for n in doomed}  # type: ignore[index]
    for name in doomed:
        kube.delete_snapshot(namespace, name)
    kill_at_random(2)
    wait_for(
        "the deleted snapshots' contents to go", lambda: all(kube.content(c) is None for c in contents), 180
    )
    wait_for(
        "the deleted snapshots to go", lambda: all(kube.snapshot(namespace, n) is None for n in doomed), 60
    )
    left = {s for s in azure_snapshots(esan) if s.removeprefix("snapshot-") in doomed_uids}
    assert left == set(), f"Azure snapshots left after deletion: {left}"

    # 3. A restore deleted while its volume is being made, the operator down meanwhile.
    emulator.admin.clear_faults()
    azure_settings(lroSeconds=4)
    kube.create_claim(namespace, "restored", storage_class, snapshot=keep)
    core = k8s.CoreV1Api(api_client)

    def provisioning() -> bool:
        pvc = core.read_namespaced_persistent_volume_claim("restored", namespace)
        return PROVISIONING in (pvc.metadata.finalizers or [])

    wait_for("the restore to be in flight", provisioning, 60, interval=0.1)
    uid = core.read_namespaced_persistent_volume_claim("restored", namespace).metadata.uid
    operator.kill()
    core.delete_namespaced_persistent_volume_claim("restored", namespace)
    operator = start_operator()

    def claim_gone() -> bool:
        try:
            core.read_namespaced_persistent_volume_claim("restored", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the deleted restore claim to go", claim_gone, 120)
    assert f"pvc-{uid}" not in azure_volumes(esan), "the abandoned restore's volume was left in Azure"
    assert not [pv for pv in core.list_persistent_volume().items if pv.metadata.name == f"pvc-{uid}"]

    # 4. An export whose source is deleted mid-copy: the copy finishes, then the snapshot goes.
    azure_settings(lroSeconds=0, exportSeconds=8)
    keep_uid = kube.snapshot(namespace, keep)["metadata"]["uid"]  # type: ignore[index]
    keep_content = content_of(kube, namespace, keep)["metadata"]["name"]  # type: ignore[index]
    exports.create(namespace, "copy", volume_snapshot=keep)
    exports.wait_phase(namespace, "copy", "Exporting")
    kube.delete_snapshot(namespace, keep)
    kube.wait_event("default", keep_content, "WaitingForExport")
    assert f"snapshot-{keep_uid}" in azure_snapshots(esan), "the source was deleted under a running export"
    exports.wait_phase(namespace, "copy", "Succeeded", timeout=120)
    wait_for("the exported snapshot's content to go", lambda: kube.content(keep_content) is None, 120)
    assert f"snapshot-{keep_uid}" not in azure_snapshots(esan)
    operator.stop()


def test_the_standby_takes_over_when_the_active_replica_is_killed_mid_burst(
    azure_settings: Callable[..., None],
    start_operator: StartOperator,
    esan: ElasticSanMgmtClient,
    api_client: k8s.ApiClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    lease = unique_name("ess-lease")
    replicas = {"ESS_STANDALONE": "false", "ESS_LEASE_NAME": lease, "ESS_LEASE_NAMESPACE": namespace}
    coordination = k8s.CoordinationV1Api(api_client)

    def holder() -> str:
        try:
            return str(coordination.read_namespaced_lease(lease, namespace).spec.holder_identity or "")
        except ApiException:
            return ""

    active = start_operator(**replicas, POD_ID="replica-a")
    wait_for("replica a to lead", lambda: holder() == "replica-a", 60)
    standby = start_operator(**replicas, POD_ID="replica-b")
    volumes = [source_volume(10) for _ in range(2)]
    snapshot_class, claims = classes_and_claims(kube, namespace, volumes, "ha")
    azure_settings(lroSeconds=2)
    names = [f"burst-{i}" for i in range(10)]
    for i, name in enumerate(names):
        kube.create_snapshot(namespace, name, claims[i % 2], snapshot_class=snapshot_class)

    def creating() -> bool:
        contents = [content_of(kube, namespace, n) for n in names]
        return create_in_flight(contents, lambda: any(snapshots_of(esan, v.name) for v in volumes))

    wait_for("the active replica to be mid-burst", creating, 60, interval=0.1)
    # Every replica makes one authenticated read of the first managed SAN at start-up (a warm token
    # and connection for a takeover); anything else would be the standby acting.
    standby_writes = [
        ln
        for ln in standby.metrics().splitlines()
        if ln.startswith("elasticsan_snapshotter_azure_calls_total{")
        and 'operation="elastic_san.get"' not in ln
    ]
    assert standby_writes == [], (
        f"the standby acted while the active replica held the Lease: {standby_writes}"
    )
    killed = time.monotonic()
    active.kill()
    wait_for("the standby to take the Lease", lambda: holder() == "replica-b", 60, interval=0.1)
    took_over = time.monotonic() - killed
    for name in names:
        kube.wait_snapshot_ready(namespace, name, timeout=120)
    print(f"takeover after SIGKILL of the active replica: {took_over:.1f}s")
    assert_converged(kube, esan, namespace, names)
    assert coordination.read_namespaced_lease(lease, namespace).spec.lease_transitions == 1
    standby.stop()
