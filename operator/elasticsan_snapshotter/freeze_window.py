"""The operator's freeze window around a group cut: reserve, freeze, cut, prove, thaw, report.

The group snapshotter gives the members (where each is mounted), one ``FreezeAgentPort`` per
node, and three callables: ``reserve`` (take the Azure write budget for every member, so no
429 can stretch a freeze), ``cut`` (create every member snapshot and wait until each has
succeeded) and ``pods_after`` (which pods mount the members now). The coordinator freezes
every node in parallel with TTL = what is left of the budget, cuts, proves the freeze held
and thaws on every exit path; the answers to the thaw right after the cut are the proof. The result carries the *achieved* level, never the requested
one. ``record`` is called before each step is acted on, so a restarted operator knows which
lease to release (``release``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import NotFound, SnapshotterError
from elasticsan_snapshotter.domain.freeze import (
    CUT,
    FILESYSTEM_CONSISTENT,
    FREEZE,
    RESERVE,
    THAWED,
    FreezeAgentPort,
    FreezePolicy,
    LeaseState,
    LeaseView,
    MemberMount,
    WindowResult,
    WindowStep,
    lease_ttl,
    outcome,
    plan_freeze,
    prove,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


async def _no_record(step: WindowStep) -> None:
    return None


class FreezeCoordinator:
    def __init__(
        self,
        agents: Mapping[str, FreezeAgentPort],
        *,
        record: Callable[[WindowStep], Awaitable[None]] = _no_record,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agents = agents
        self.record = record
        self.clock = clock

    async def run(
        self,
        lease_id: str,
        policy: FreezePolicy,
        members: Sequence[MemberMount],
        *,
        reserve: Callable[[], Awaitable[None]],
        cut: Callable[[], Awaitable[T]],
        pods_after: Callable[[], Awaitable[Iterable[tuple[str, str, str]]]],
    ) -> WindowResult[T]:
        if not policy.freezes:
            await reserve()
            return WindowResult(outcome(policy, None), await cut(), None, 0.0)
        plan = plan_freeze(members, self.agents)
        nodes = plan.nodes
        await self.record(WindowStep(RESERVE, lease_id, nodes))
        await reserve()
        if not nodes:  # nothing mounted, so nothing can write: consistent, unless a pod began to mount
            result = await cut()
            proof = prove(plan, {}, {}, await pods_after())
            return WindowResult(outcome(policy, proof), result, proof, 0.0)
        identities = await asyncio.gather(*(self.agents[n].identity() for n in nodes))
        boots = {n: i.boot_id for n, i in zip(nodes, identities, strict=True)}
        await self.record(WindowStep(FREEZE, lease_id, nodes))
        started = self.clock()
        thawed: dict[str, tuple[bool, LeaseView] | None] | None = None
        try:

            async def freeze(node: str, max_ttl: float) -> LeaseView:
                ttl = lease_ttl(policy.budget_seconds, self.clock() - started, max_ttl)
                return await self.agents[node].freeze(lease_id, plan.targets[node], ttl)

            frozen = await asyncio.gather(
                *(freeze(n, i.max_ttl_seconds) for n, i in zip(nodes, identities, strict=True)),
                return_exceptions=True,
            )
            failed = [f for f in frozen if isinstance(f, BaseException)]
            if failed:
                raise failed[0]
            await self.record(WindowStep(CUT, lease_id, nodes))
            result = await cut()
            # Thawing at once keeps the window short, and its answer is the proof: held until now.
            thawed = await self._thaw(lease_id, nodes)
        finally:
            # Every exit path thaws; a node whose thaw failed just now gets one more try.
            await release(self.agents, lease_id, [n for n in nodes if thawed is None or thawed[n] is None])
            frozen_seconds = self.clock() - started
            metrics.FREEZE_WINDOW_SECONDS.observe(frozen_seconds)
            await self.record(WindowStep(THAWED, lease_id, nodes))
        for answer in thawed.values():
            if answer is not None and answer[1].state is LeaseState.EXPIRED:
                metrics.FREEZE_LEASES_EXPIRED.inc()
        proof = prove(plan, boots, thawed, await pods_after())
        achieved = outcome(policy, proof)
        if achieved.level != FILESYSTEM_CONSISTENT:
            metrics.FREEZE_PROOFS_FAILED.inc()
            log.warning("freeze of %s not proven: %s", lease_id, "; ".join(proof.reasons))
        return WindowResult(achieved, result, proof, frozen_seconds)

    async def _thaw(self, lease_id: str, nodes: Sequence[str]) -> dict[str, tuple[bool, LeaseView] | None]:
        answers = await asyncio.gather(
            *(self.agents[n].thaw(lease_id) for n in nodes), return_exceptions=True
        )
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                log.error("thawing lease %s on node %s failed (its TTL will): %s", lease_id, node, answer)
        return {n: (a if isinstance(a, tuple) else None) for n, a in zip(nodes, answers, strict=True)}


async def release(agents: Mapping[str, FreezeAgentPort], lease_id: str, nodes: Iterable[str]) -> None:
    """Thaw ``lease_id`` on every node, in parallel; an agent that cannot be reached thaws at the TTL."""

    async def thaw(node: str) -> None:
        agent = agents.get(node)
        if agent is None:
            return
        try:
            await agent.thaw(lease_id)
        except NotFound:
            pass  # never frozen there (the freeze failed first), or long gone
        except SnapshotterError as error:
            log.error("thawing lease %s on node %s failed (its TTL will): %s", lease_id, node, error)

    await asyncio.gather(*(thaw(n) for n in nodes))


__all__ = ["CUT", "FREEZE", "RESERVE", "THAWED", "FreezeCoordinator", "WindowResult", "WindowStep", "release"]
