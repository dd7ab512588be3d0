"""The operator's freeze window against two real agents on two node stand-ins.

The cut copies each member's disk image (the bytes a snapshot would hold) in parallel; a
restore mounts the copy. One writer appends numbered, fsynced records alternately to both
volumes, so a set of copies is one point in time exactly when the last record on one volume
and the last on the other are neighbours in the writer's order.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import pytest

from elasticsan_snapshotter.domain.freeze import (
    CRASH_CONSISTENT_PER_VOLUME,
    FILESYSTEM_CONSISTENT,
    FreezePolicy,
    LeaseState,
    MemberMount,
)
from elasticsan_snapshotter.freeze.client import AgentClient, connect
from elasticsan_snapshotter.freeze_window import FreezeCoordinator, WindowResult
from freeze_support import AgentProcess, Node, Writer, is_frozen, last_record, make_pki, node, pod_uid

ROUNDS = 20


@dataclass
class Cluster:
    nodes: dict[str, Node]
    agents: dict[str, AgentProcess]
    clients: dict[str, AgentClient]
    members: list[MemberMount]
    mounts: dict[str, Path]
    writer: Writer
    scratch: Path

    async def pods_after(self) -> list[tuple[str, str, str]]:
        return [(n, uid, m.pv_name) for m in self.members for n, uid in m.mounts]

    def copy_images(self) -> dict[str, Path]:
        """The cut: every member's disk image as it is now."""
        round_dir = self.scratch / uuid.uuid4().hex[:6]
        round_dir.mkdir()
        copies = {}
        for name, mount in self.mounts.items():
            copies[name] = round_dir / f"{name}.img"
            shutil.copyfile(self.nodes[name].image_of(mount), copies[name])
        return copies

    async def cut(self) -> dict[str, Path]:
        return await asyncio.to_thread(self.copy_images)

    async def window(
        self, lease_id: str, policy: FreezePolicy, cut: Callable[[], Awaitable[dict[str, Path]]] | None = None
    ) -> WindowResult[dict[str, Path]]:
        async def reserve() -> None:
            return None

        coordinator = FreezeCoordinator(dict(self.clients))
        return await coordinator.run(
            lease_id, policy, self.members, reserve=reserve, cut=cut or self.cut, pods_after=self.pods_after
        )

    def consistent(self, copies: dict[str, Path]) -> bool:
        last = [last_record(image, self.scratch) for image in copies.values()]
        if None in last:
            return False
        a, b = last
        assert a is not None
        assert b is not None
        return abs(a - b) == 1


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    pki = make_pki(tmp_path / "pki")
    with node("node-a") as node_a, node("node-b") as node_b:
        nodes = {"node-a": node_a, "node-b": node_b}
        members, mounts, agents, clients = [], {}, {}, {}
        for name, stand_in in nodes.items():
            uid, pv = pod_uid(), f"pv-{name}"
            mounts[name] = stand_in.mount_volume(uid, pv)
            members.append(MemberMount(f"vol-{name}", pv, ((name, uid),)))
            agents[name] = AgentProcess(stand_in, pki)
        for agent in agents.values():
            await agent.start()
        clients = connect({name: agent.address for name, agent in agents.items()}, pki.operator)
        writer = node_a.start_writer(mounts["node-a"], mounts["node-b"])
        try:
            yield Cluster(nodes, agents, clients, members, mounts, writer, node_a.base / "copies")
        finally:
            for client in clients.values():
                await client.close()


async def test_frozen_sets_are_one_point_in_time_and_unfrozen_ones_are_not(cluster: Cluster) -> None:
    cluster.scratch.mkdir()
    frozen = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=30)
    crash = FreezePolicy()
    inconsistent_crash = 0
    for n in range(ROUNDS):
        result = await cluster.window(f"round-{n}", frozen)
        assert result.outcome.level == FILESYSTEM_CONSISTENT, result.outcome.message
        assert cluster.consistent(result.cut), f"round {n}: a proven freeze gave an inconsistent set"
        assert result.frozen_seconds > 0

        unfrozen = await cluster.window(f"crash-{n}", crash)
        assert unfrozen.outcome.level == CRASH_CONSISTENT_PER_VOLUME
        inconsistent_crash += not cluster.consistent(unfrozen.cut)
        shutil.rmtree(cluster.scratch)
        cluster.scratch.mkdir()
    print(
        f"\n{ROUNDS} FilesystemConsistent sets: all consistent; {ROUNDS} CrashConsistentPerVolume sets "
        f"cut the same way: {inconsistent_crash} not consistent"
    )
    assert not any(is_frozen(m) for m in cluster.mounts.values())
    assert cluster.writer.advancing()


async def test_the_freeze_covers_the_whole_cut(cluster: Cluster) -> None:
    cluster.scratch.mkdir()
    times: list[float] = []

    async def timed_cut() -> dict[str, Path]:
        times.append(time.time())
        copies = await cluster.cut()
        await asyncio.sleep(0.5)  # a cut that takes a while, as Azure's does
        times.append(time.time())
        return copies

    result = await cluster.window("covered", FreezePolicy(FILESYSTEM_CONSISTENT), timed_cut)
    assert result.outcome.level == FILESYSTEM_CONSISTENT
    assert cluster.writer.advancing()
    assert cluster.writer.done_between(*times) == [], "the writer completed a record during the cut"


async def test_a_lease_that_expired_before_the_cut_finished_is_not_file_system_consistent(
    cluster: Cluster,
) -> None:
    cluster.scratch.mkdir()

    async def slow_cut() -> dict[str, Path]:
        copies = await cluster.cut()
        async with asyncio.timeout(30):
            while True:  # polls the agent (another process): a cut slower than the lease
                if (await cluster.clients["node-b"].get_lease("slow")).state is LeaseState.EXPIRED:
                    return copies
                await asyncio.sleep(0.05)

    policy = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=1.5)
    result = await cluster.window("slow", policy, slow_cut)
    assert result.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert result.outcome.retry
    assert result.proof is not None
    assert any("lease slow is Expired" in reason for reason in result.proof.reasons)
    assert not any(is_frozen(m) for m in cluster.mounts.values())
    assert cluster.writer.advancing()


async def test_an_agent_restarted_during_the_cut_voids_the_proof(cluster: Cluster) -> None:
    cluster.scratch.mkdir()

    async def cut_with_restart() -> dict[str, Path]:
        copies = await cluster.cut()
        cluster.agents["node-b"].kill()
        await cluster.agents["node-b"].start()
        return copies

    result = await cluster.window("restarted", FreezePolicy(FILESYSTEM_CONSISTENT), cut_with_restart)
    assert result.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert result.proof is not None
    reasons = " ".join(result.proof.reasons)
    assert "ThawedOnRestart" in reasons
    assert "restarted during the cut" in reasons
    assert not any(is_frozen(m) for m in cluster.mounts.values())


OPERATOR = r"""
import asyncio, sys
from pathlib import Path
from elasticsan_snapshotter.domain.freeze import FILESYSTEM_CONSISTENT, FreezePolicy, MemberMount
from elasticsan_snapshotter.freeze.client import AgentClient, connect
from elasticsan_snapshotter.freeze.tls import TlsFiles
from elasticsan_snapshotter.freeze_window import FreezeCoordinator

async def main():
    tls = TlsFiles(*map(Path, sys.argv[1:4]))
    members, clients = [], {}
    for spec in sys.argv[4:]:
        node, address, uid, pv = spec.split(",")
        clients[node] = AgentClient(address, tls)
        members.append(MemberMount(pv, pv, ((node, uid),)))

    async def nothing():
        return None

    async def cut():
        print("cutting", flush=True)
        await asyncio.Event().wait()  # killed here, frozen

    policy = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=4)
    await FreezeCoordinator(clients).run("killed", policy, members, reserve=nothing, cut=cut, pods_after=nothing)

asyncio.run(main())
"""


async def test_a_killed_operator_leaves_nothing_frozen_past_the_ttl(cluster: Cluster) -> None:
    tls = cluster.agents["node-a"].pki.operator
    specs = [
        f"{n},{cluster.agents[n].address},{uid},{m.pv_name}" for m in cluster.members for n, uid in m.mounts
    ]
    operator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OPERATOR, str(tls.cert), str(tls.key), str(tls.ca), *specs, stdout=PIPE
    )
    try:
        assert operator.stdout is not None
        async with asyncio.timeout(60):
            assert await operator.stdout.readline() == b"cutting\n"
        assert all(is_frozen(m) for m in cluster.mounts.values())
        assert cluster.writer.stalled(over=0.5)
    finally:
        operator.kill()
        await operator.wait()
    for name in cluster.nodes:
        async with asyncio.timeout(30):
            while True:  # the agents' own timers, in their own processes
                if (await cluster.clients[name].get_lease("killed")).state is LeaseState.EXPIRED:
                    break
                await asyncio.sleep(0.1)
    assert not any(is_frozen(m) for m in cluster.mounts.values())
    assert cluster.writer.advancing()
