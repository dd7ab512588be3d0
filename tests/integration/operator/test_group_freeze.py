"""FilesystemConsistent VolumeGroupSnapshots through the operator, with real freezes.

Two node stand-ins, each with a real freeze agent under its own kubelet root; the claims' volumes
(real ext4 on the emulator's volume files) are mounted where kubelet would for a pod's UID, and
one writer appends numbered, fsynced records alternately to both. A group's set is one point in
time exactly when the last record in one member snapshot and the last in the other are
neighbours in the writer's order; the member snapshots are read back from volumes restored from
them in the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from content_scenario import reflink_scratch
from freeze_scenario import (
    CONSISTENCY,
    FREEZE_LEASE,
    FREEZE_RETRY,
    FREEZE_WINDOW,
    LABELS,
    NODES,
    Rig,
    agent_pod,
    annotations_of,
    create_pod,
    cut,
    cutting,
    frozen_groups,
    group_level,
    last_records,
    member_puts,
    pod_body,
    published,
    scratch_dir,
    slow_azure,
    tls_dir,
    workload,
)
from group_scenario import Groups, exposed_metrics
from kubernetes import client as k8s
from operator_emulator import seeded_emulator
from operator_scenario import Kube, StartOperator, unique_name

from elasticsan_snapshotter.domain.freeze import LeaseState
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from freeze_support import (
    AgentProcess,
    force_thaw,
    freeze_directly,
    is_frozen,
    make_pki,
    node,
    require_loop_devices,
)
from node_support import checked_node
from waiting import wait_for

ROUNDS = 20


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """The emulator's state on a reflink file system (snapshots are then atomic copies), or None."""
    with reflink_scratch(tmp_path_factory) as directory:
        yield directory


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("access") / "access.jsonl"


@pytest.fixture(scope="module")
def emulator(
    scratch: Path | None, access_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    state = scratch / "emulator" if scratch else tmp_path_factory.mktemp("emulator")
    # Dozens of groups of the same two volumes: far more than 7 snapshots per volume in 5 minutes.
    process = seeded_emulator(
        state, extra_args=("--snapshot-rate-limit", "1000", "--access-log", str(access_log))
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def rig(
    emulator: EmulatorProcess,
    start_operator: StartOperator,
    api_client: k8s.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    require_loop_devices()
    kube = Kube(api_client)
    agents_namespace = unique_name("ess-agents")
    kube.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=agents_namespace)))
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    try:
        with contextlib.ExitStack() as stack:
            nodes = {n: stack.enter_context(node(n)) for n in NODES}
            stand_ins = {
                n: stack.enter_context(checked_node(emulator.admin, nodes[n].kubelet_root)) for n in NODES
            }
            agents = {n: AgentProcess(nodes[n], pki) for n in NODES}
            stack.callback(_stop_agents, agents)
            for name, agent in agents.items():
                asyncio.run(agent.start())
                agent_pod(kube, agents_namespace, name, agent.port)
            env = {
                "ESS_FREEZE_AGENT_NAMESPACE": agents_namespace,
                "ESS_FREEZE_CLIENT_TLS_DIR": str(tls_dir(pki, tmp_path_factory.mktemp("client-tls"))),
                "ESS_SNAPSHOTS_PER_WINDOW": "1000",
            }
            rig = Rig(pki, nodes, stand_ins, agents, start_operator, env)
            try:
                yield rig
            finally:
                rig.operator.stop()
    finally:
        kube.core.delete_namespace(agents_namespace)


def _stop_agents(agents: dict[str, AgentProcess]) -> None:
    for agent in agents.values():
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()


def test_filesystem_consistent_groups_are_one_point_in_time_and_crash_consistent_ones_are_not(
    rig: Rig,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    access_log: Path,
    tmp_path: Path,
) -> None:
    groups = Groups(kube, namespace)
    storage_class, frozen = groups.classes("Delete", consistency="FilesystemConsistent")
    crash = unique_name("crash")
    groups.create_class(crash, consistency="CrashConsistentPerVolume")
    claims = groups.labelled_claims(source_volume, storage_class, 2, LABELS)
    scratch = scratch_dir(tmp_path)
    inconsistent_crash = 0
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        by_node = {node_name: handle for handle, node_name in load.handles.items()}

        def neighbours(content: dict[str, Any]) -> tuple[bool, dict[str, int | None]]:
            last = last_records(esan, emulator.admin, content, scratch)
            a, b = last[by_node["node-a"]], last[by_node["node-b"]]
            return a is not None and b is not None and abs(a - b) == 1, last

        def written_during_cut(content: dict[str, Any]) -> list[int]:
            """Records the writer completed from the first member's PUT to the last one's."""
            emulator.admin.counters()  # flushes the access log
            puts = member_puts(access_log, content)
            assert len(puts) == 2
            return load.writer.done_between(min(p[0] for p in puts), max(p[1] for p in puts))

        during_crash_cuts = 0
        for n in range(ROUNDS):
            assert load.writer.advancing(), "the writer stopped: the sets would be consistent trivially"
            content = cut(groups, f"fs-{n}", frozen)
            annotations = content["metadata"]["annotations"]
            assert annotations[CONSISTENCY] == "FilesystemConsistent"
            assert float(annotations[FREEZE_WINDOW]) > 0
            assert FREEZE_LEASE not in annotations
            # The freeze really held: no record completed from the first member's PUT to the last one's.
            assert written_during_cut(content) == []
            adjacent, last = neighbours(content)
            assert adjacent, f"round {n}: a proven freeze gave a set that is not one point in time: {last}"
            if n == 0:  # the level is on the VolumeGroupSnapshot too, where users look
                wait_for("the level on the VolumeGroupSnapshot", lambda: group_level(groups, "fs-0"), 30)
                assert group_level(groups, "fs-0") == "FilesystemConsistent"
            groups.delete(f"fs-{n}")

            content = cut(groups, f"cc-{n}", crash)
            assert content["metadata"]["annotations"][CONSISTENCY] == "CrashConsistentPerVolume"
            inconsistent_crash += not neighbours(content)[0]
            during_crash_cuts += len(written_during_cut(content))
            groups.delete(f"cc-{n}")
        assert not any(is_frozen(m.path) for m in load.mounts.values())
        assert load.writer.advancing()
    print(
        f"\n{ROUNDS} FilesystemConsistent groups through the operator: all one point in time; "
        f"{ROUNDS} CrashConsistentPerVolume groups taken the same way: {inconsistent_crash} not "
        f"(the writer completed {during_crash_cuts} records between their first and last member PUTs, "
        f"{load.writer.count()} in all)"
    )


@pytest.mark.parametrize("on_unproven", ["PublishCrashConsistent", "Retry"])
def test_an_operator_killed_while_frozen_is_thawed_by_the_agents_and_the_group_is_not_claimed(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    on_unproven: str,
) -> None:
    groups, frozen, claims = frozen_groups(
        kube, namespace, source_volume, freezeBudgetSeconds="3", onUnprovenFreeze=on_unproven
    )
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        with slow_azure(emulator, 8):  # the cut is still running when the operator dies
            groups.create("killed", frozen, LABELS)
            held = cutting(groups, "killed")
            assert held["nodes"] == list(NODES)
            assert all(is_frozen(m.path) for m in load.mounts.values())
            assert load.writer.stalled(over=0.3)
            rig.operator.kill()
            killed_at = time.time()
            for node_name in NODES:  # the agents' own timers, in their own processes
                wait_for(
                    f"the lease on {node_name} to expire",
                    lambda n=node_name: rig.lease_state(n, held["lease"]) is LeaseState.EXPIRED,
                    30,
                    interval=0.1,
                )
            assert not any(is_frozen(m.path) for m in load.mounts.values())
            assert load.writer.advancing()
        rig.restart_operator()
        groups.wait_ready("killed")
        content = groups.content_of("killed")
        annotations = content["metadata"]["annotations"]
        assert FREEZE_LEASE not in annotations
        cut_event = kube.wait_event(namespace, "killed", "GroupSnapshotCut")
        if on_unproven == "PublishCrashConsistent":
            assert annotations[CONSISTENCY] == "CrashConsistentPerVolume"
            assert FREEZE_WINDOW not in annotations
            unproven = kube.wait_event(namespace, "killed", "FreezeNotProven")
            assert held["lease"] in unproven.message
            assert "CrashConsistentPerVolume" in cut_event.message
        else:
            # Retry: the killed attempt's members were deleted and cut again in a new, proven window.
            assert annotations[CONSISTENCY] == "FilesystemConsistent"
            assert "FilesystemConsistent" in cut_event.message
            cut_at = [e["creationTime"] / 1e9 for e in content["status"]["volumeSnapshotInfoList"]]
            assert min(cut_at) > killed_at, "a member cut before the operator died was kept"


def test_an_agent_restarted_during_the_cut_voids_the_proof(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, frozen, claims = frozen_groups(
        kube, namespace, source_volume, freezeBudgetSeconds="30", onUnprovenFreeze="PublishCrashConsistent"
    )
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        with slow_azure(emulator, 6):
            groups.create("restarted", frozen, LABELS)
            cutting(groups, "restarted")
            agent = rig.agents["node-b"]
            agent.kill()
            # The kernel keeps the freeze without its agent; the restarted agent thaws from its journal.
            assert is_frozen(load.mounts["node-b"].path)
            asyncio.run(agent.start())
            assert not is_frozen(load.mounts["node-b"].path)
            content = published(groups, "restarted")
        assert content["metadata"]["annotations"][CONSISTENCY] == "CrashConsistentPerVolume"
        unproven = kube.wait_event(namespace, "restarted", "FreezeNotProven")
        assert "node node-b: the agent restarted during the cut" in unproven.message
        assert load.writer.advancing()


def test_a_pod_that_began_to_use_a_member_during_the_cut_voids_the_proof(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, frozen, claims = frozen_groups(
        kube, namespace, source_volume, onUnprovenFreeze="PublishCrashConsistent"
    )
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        with slow_azure(emulator, 4):
            groups.create("moved", frozen, LABELS)
            cutting(groups, "moved")
            # A second pod of the application, on the other node, starts with the first claim: its
            # writes would not be covered by the freeze of node-a.
            late = create_pod(kube, namespace, pod_body("app-late", "node-b", claim=load.claims["node-a"]))
            content = published(groups, "moved")
        assert content["metadata"]["annotations"][CONSISTENCY] == "CrashConsistentPerVolume"
        unproven = kube.wait_event(namespace, "moved", "FreezeNotProven")
        assert f"pod {late.metadata.uid} began to mount" in unproven.message
        assert not any(is_frozen(m.path) for m in load.mounts.values())


def test_a_cut_slower_than_the_lease_is_not_filesystem_consistent(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, frozen, claims = frozen_groups(
        kube, namespace, source_volume, freezeBudgetSeconds="1.5", onUnprovenFreeze="PublishCrashConsistent"
    )
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        with slow_azure(emulator, 3):
            content = cut(groups, "slow", frozen)
        assert content["metadata"]["annotations"][CONSISTENCY] == "CrashConsistentPerVolume"
        wait_for("the level on the VolumeGroupSnapshot", lambda: group_level(groups, "slow"), 30)
        assert group_level(groups, "slow") == "CrashConsistentPerVolume"
        unproven = kube.wait_event(namespace, "slow", "FreezeNotProven")
        assert "Expired, not Active" in unproven.message
        assert not any(is_frozen(m.path) for m in load.mounts.values())
        assert load.writer.advancing()
    exposed = exposed_metrics(rig.operator)
    assert exposed["elasticsan_snapshotter_freeze_leases_expired_total"] >= 1
    assert exposed["elasticsan_snapshotter_freeze_proofs_failed_total"] >= 1
    assert (
        exposed['elasticsan_snapshotter_group_snapshot_levels_total{level="CrashConsistentPerVolume"}'] >= 1
    )


def test_a_file_system_frozen_by_someone_else_is_never_thawed_and_nothing_is_cut(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, frozen, claims = frozen_groups(kube, namespace, source_volume)
    with workload(kube, namespace, claims, rig.nodes, rig.stand_ins) as load:
        theirs, ours = load.mounts["node-a"].path, load.mounts["node-b"].path
        freeze_directly(theirs)  # as another tool (fsfreeze -f) would
        try:
            emulator.admin.reset_counters()
            groups.create("busy", frozen, LABELS)
            refused = kube.wait_event(namespace, "busy", "FrozenBySomeoneElse")
            assert f"{theirs} is already frozen by someone else" in refused.message
            assert is_frozen(theirs), "a freeze the operator did not set was thawed"
            assert not is_frozen(ours), "the other node was left frozen"
            assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 0
            # The attempt's own annotation writes wake the operator at once; it waits instead of freezing again.
            retry = json.loads(annotations_of(groups, "busy")[FREEZE_RETRY])
            assert retry["attempts"] == 1
            assert retry["notBefore"] - time.time() > 20
            assert CONSISTENCY not in annotations_of(groups, "busy")
        finally:
            force_thaw(theirs)
        assert load.writer.advancing()


def test_a_member_mounted_on_a_node_without_an_agent_fails_the_group_naming_the_node(
    rig: Rig,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, frozen, claims = frozen_groups(kube, namespace, source_volume)
    # The first member is mounted nowhere (it needs no freeze); the second by a pod on node-c.
    create_pod(kube, namespace, pod_body("app-c", "node-c", claim=claims[1][0]))
    emulator.admin.reset_counters()
    groups.create("lonely", frozen, LABELS)
    message = groups.wait_error("lonely", "node-c")
    assert "no freeze agent" in message
    assert "node-a" not in message
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 0
