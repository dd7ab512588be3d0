"""The freeze window with stateful fake agents: order of steps, TTLs, thaw on every exit path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import NotFound
from elasticsan_snapshotter.domain.freeze import (
    CRASH_CONSISTENT_PER_VOLUME,
    FILESYSTEM_CONSISTENT,
    PUBLISH_CRASH_CONSISTENT,
    AgentIdentity,
    AgentUnavailable,
    FreezePolicy,
    FrozenBySomeoneElse,
    LeaseState,
    LeaseView,
    MemberMount,
    NoFreezeAgent,
    Target,
)
from elasticsan_snapshotter.freeze_window import FreezeCoordinator, WindowStep, release

pytestmark = pytest.mark.unit

UID_1 = "0b6f1c52-57a4-4d4e-9a53-1b1c4d7c8e01"
UID_2 = "5d2e9f7a-1c3b-4b8e-8f6a-2a9b7c6d5e02"
MEMBERS = [
    MemberMount("vol-1", "pv-1", (("node-1", UID_1),)),
    MemberMount("vol-2", "pv-2", (("node-2", UID_2),)),
]
PODS = [("node-1", UID_1, "pv-1"), ("node-2", UID_2, "pv-2")]
POLICY = FreezePolicy(FILESYSTEM_CONSISTENT, budget_seconds=20)


class FakeAgent:
    def __init__(self, node: str, log: list[str], *, refuse: Exception | None = None) -> None:
        self.node = node
        self.log = log
        self.refuse = refuse
        self.boot = f"boot-{node}"
        self.leases: dict[str, LeaseView] = {}
        self.ttls: list[float] = []

    async def identity(self) -> AgentIdentity:
        return AgentIdentity(self.node, self.boot, 15.0)

    async def freeze(self, lease_id: str, targets: Sequence[Target], ttl_seconds: float) -> LeaseView:
        self.log.append(f"freeze {self.node}")
        if self.refuse is not None:
            raise self.refuse
        self.ttls.append(ttl_seconds)
        self.leases[lease_id] = LeaseView(
            lease_id, LeaseState.ACTIVE, self.boot, self.node, tuple(targets), 0
        )
        return self.leases[lease_id]

    def end(self, lease_id: str, state: LeaseState) -> None:
        lease = self.leases[lease_id]
        self.leases[lease_id] = LeaseView(lease_id, state, lease.boot_id, self.node, lease.targets, 0)

    async def get_lease(self, lease_id: str) -> LeaseView:
        if lease_id not in self.leases:
            raise NotFound(lease_id)
        return self.leases[lease_id]

    async def thaw(self, lease_id: str) -> tuple[bool, LeaseView]:
        self.log.append(f"thaw {self.node}")
        lease = await self.get_lease(lease_id)
        if lease.state is LeaseState.ACTIVE:
            self.end(lease_id, LeaseState.THAWED)
            return True, self.leases[lease_id]
        return False, lease

    @property
    def frozen(self) -> bool:
        return any(lease.state is LeaseState.ACTIVE for lease in self.leases.values())


def agents(log: list[str], **refusals: Exception) -> dict[str, FakeAgent]:
    return {n: FakeAgent(n, log, refuse=refusals.get(n.replace("-", "_"))) for n in ("node-1", "node-2")}


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"{metrics.NAMESPACE}_{name}") or 0.0


async def pods() -> list[tuple[str, str, str]]:
    return PODS


async def test_reserve_freeze_cut_prove_thaw_in_that_order_and_every_step_recorded_first() -> None:
    log: list[str] = []
    nodes = agents(log)
    steps: list[WindowStep] = []

    async def record(step: WindowStep) -> None:
        steps.append(step)
        log.append(f"record {step.phase}")

    async def reserve() -> None:
        log.append("reserve")

    async def cut() -> str:
        assert all(a.frozen for a in nodes.values()), "cut before every node was frozen"
        log.append("cut")
        return "snapshots"

    before = sample("freeze_window_seconds_count")
    result = await FreezeCoordinator(nodes, record=record).run(
        "group-1", POLICY, MEMBERS, reserve=reserve, cut=cut, pods_after=pods
    )
    assert result.outcome.level == FILESYSTEM_CONSISTENT
    assert result.cut == "snapshots"
    assert log[:2] == ["record Reserve", "reserve"]
    assert log[2:5] == ["record Freeze", "freeze node-1", "freeze node-2"]
    assert log[5:7] == ["record Cut", "cut"]
    assert sorted(log[7:9]) == ["thaw node-1", "thaw node-2"]
    assert log[9] == "record Thawed"
    assert {s.nodes for s in steps} == {("node-1", "node-2")}
    assert not any(a.frozen for a in nodes.values())
    # The TTL is what is left of the budget, capped by the agent's 15 s.
    assert nodes["node-1"].ttls == [15.0]
    assert sample("freeze_window_seconds_count") == before + 1


async def test_an_expired_lease_means_crash_consistent_and_retry_and_counts_a_failed_proof() -> None:
    log: list[str] = []
    nodes = agents(log)

    async def cut() -> None:
        nodes["node-2"].end("group-2", LeaseState.EXPIRED)

    failed, expired = sample("freeze_proofs_failed_total"), sample("freeze_leases_expired_total")
    result = await FreezeCoordinator(nodes).run(
        "group-2", POLICY, MEMBERS, reserve=_nothing, cut=cut, pods_after=pods
    )
    assert result.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert result.outcome.retry
    assert result.proof is not None
    assert "node node-2: lease group-2 is Expired" in result.proof.reasons[0]
    assert sample("freeze_proofs_failed_total") == failed + 1
    assert sample("freeze_leases_expired_total") == expired + 1
    assert not nodes["node-1"].frozen


async def _nothing() -> None:
    return None


async def test_the_class_can_publish_an_unproven_set_as_crash_consistent() -> None:
    nodes = agents([])

    async def cut() -> None:
        nodes["node-1"].boot = "boot-new"
        nodes["node-1"].end("group-3", LeaseState.THAWED_ON_RESTART)

    policy = FreezePolicy(FILESYSTEM_CONSISTENT, on_unproven=PUBLISH_CRASH_CONSISTENT)
    result = await FreezeCoordinator(nodes).run(
        "group-3", policy, MEMBERS, reserve=_nothing, cut=cut, pods_after=pods
    )
    assert (result.outcome.level, result.outcome.retry) == (CRASH_CONSISTENT_PER_VOLUME, False)


async def test_a_failed_cut_still_thaws_every_node() -> None:
    log: list[str] = []
    nodes = agents(log)

    async def cut() -> None:
        raise RuntimeError("Azure said no")

    with pytest.raises(RuntimeError, match="Azure said no"):
        await FreezeCoordinator(nodes).run(
            "group-4", POLICY, MEMBERS, reserve=_nothing, cut=cut, pods_after=pods
        )
    assert not any(a.frozen for a in nodes.values())
    assert sorted(e for e in log if e.startswith("thaw")) == ["thaw node-1", "thaw node-2"]


async def test_a_cancelled_window_still_thaws() -> None:
    nodes = agents([])
    cutting = asyncio.Event()

    async def cut() -> None:
        cutting.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        FreezeCoordinator(nodes).run("group-5", POLICY, MEMBERS, reserve=_nothing, cut=cut, pods_after=pods)
    )
    await cutting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(a.frozen for a in nodes.values())


@pytest.mark.parametrize(
    "error",
    [FrozenBySomeoneElse("frozen by someone else"), AgentUnavailable("no answer")],
    ids=["busy", "down"],
)
async def test_a_node_that_cannot_freeze_thaws_the_others_and_nothing_is_cut(error: Exception) -> None:
    log: list[str] = []
    nodes = agents(log, node_2=error)
    cut_called = False

    async def cut() -> None:
        nonlocal cut_called
        cut_called = True

    with pytest.raises(type(error)):
        await FreezeCoordinator(nodes).run(
            "group-6", POLICY, MEMBERS, reserve=_nothing, cut=cut, pods_after=pods
        )
    assert not cut_called
    assert not nodes["node-1"].frozen
    assert "thaw node-1" in log


async def test_no_freeze_requested_touches_no_agent_and_says_crash_consistent() -> None:
    log: list[str] = []
    result = await FreezeCoordinator(agents(log)).run(
        "group-7", FreezePolicy(), MEMBERS, reserve=_nothing, cut=_nothing, pods_after=pods
    )
    assert result.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert log == []


async def test_unmounted_members_need_no_freeze_but_a_node_without_agent_fails() -> None:
    unmounted = [MemberMount("vol-1", "pv-1"), MemberMount("vol-2", "pv-2")]

    async def no_pods() -> list[tuple[str, str, str]]:
        return []

    result = await FreezeCoordinator({}).run(
        "group-8", POLICY, unmounted, reserve=_nothing, cut=_nothing, pods_after=no_pods
    )
    assert result.outcome.level == FILESYSTEM_CONSISTENT
    assert result.frozen_seconds == 0
    # A pod that began to mount a member during the cut (unfrozen) voids the set.
    raced = await FreezeCoordinator({}).run(
        "group-8", POLICY, unmounted, reserve=_nothing, cut=_nothing, pods_after=pods
    )
    assert raced.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert raced.proof is not None
    assert "began to mount pv-1" in " ".join(raced.proof.reasons)
    with pytest.raises(NoFreezeAgent, match="node-2"):
        await FreezeCoordinator({"node-1": FakeAgent("node-1", [])}).run(
            "group-9", POLICY, MEMBERS, reserve=_nothing, cut=_nothing, pods_after=pods
        )


async def test_a_restarted_operator_releases_a_recorded_lease_and_release_is_idempotent() -> None:
    log: list[str] = []
    nodes = agents(log)
    for agent in nodes.values():
        await agent.freeze("group-10", [], 10)
    # What a new operator finds recorded: the lease and its nodes; it releases them.
    await release(nodes, "group-10", ("node-1", "node-2", "node-gone"))
    assert not any(a.frozen for a in nodes.values())
    await release(nodes, "group-10", ("node-1", "node-2"))
    await release(nodes, "never-frozen", ("node-1",))
    assert log.count("thaw node-1") == 3


async def test_a_thaw_that_fails_after_the_cut_leaves_the_set_unproven_and_is_tried_again() -> None:
    log: list[str] = []
    nodes = agents(log)
    flaky = nodes["node-2"]
    thaw = flaky.thaw
    calls = 0

    async def thaw_once_unreachable(lease_id: str) -> tuple[bool, LeaseView]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AgentUnavailable("connection reset")
        return await thaw(lease_id)

    flaky.thaw = thaw_once_unreachable  # type: ignore[method-assign]
    result = await FreezeCoordinator(nodes).run(
        "group-11", POLICY, MEMBERS, reserve=_nothing, cut=_nothing, pods_after=pods
    )
    assert result.outcome.level == CRASH_CONSISTENT_PER_VOLUME
    assert result.proof is not None
    assert result.proof.reasons == ("node node-2: the lease could not be thawed after the cut",)
    assert calls == 2
    assert not flaky.frozen
