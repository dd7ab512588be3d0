"""Freeze rules: consistency levels, the freeze budget, lease TTLs, the proof, and what a failed proof means.

A group of volumes is only consistent as a set when every file system was frozen across the
whole cut. The operator asks each node's freeze agent for a *lease* (frozen targets that thaw
by themselves at a TTL), cuts every member, and then *proves* the freeze held: every lease
still ACTIVE, under the agent boot that set it, with the same pods mounting the members.
Without that proof the set is crash consistent per volume only, and it is reported as such.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from elasticsan_snapshotter.domain.errors import InvalidRequest, SnapshotterError, Transient
from elasticsan_snapshotter.domain.parameters import InvalidParameter

CRASH_CONSISTENT_PER_VOLUME = "CrashConsistentPerVolume"
FILESYSTEM_CONSISTENT = "FilesystemConsistent"
LEVELS = (CRASH_CONSISTENT_PER_VOLUME, FILESYSTEM_CONSISTENT)

RETRY = "Retry"
"""On a failed proof: fail the attempt, delete its member snapshots and try again."""
PUBLISH_CRASH_CONSISTENT = "PublishCrashConsistent"
"""On a failed proof: publish the set, declared ``CrashConsistentPerVolume``."""
ON_UNPROVEN = (RETRY, PUBLISH_CRASH_CONSISTENT)

LEVEL_PARAMETER = "consistency"
BUDGET_PARAMETER = "freezeBudgetSeconds"
ON_UNPROVEN_PARAMETER = "onUnprovenFreeze"

DEFAULT_BUDGET_SECONDS = 30.0
MAX_TTL_SECONDS = 120.0
"""The agent's default hard cap on a lease; a budget above it could never be covered by one lease."""

_LEASE_ID = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,126}[a-z0-9])?$")
_POD_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PV_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class FreezeRefused(InvalidRequest):
    """The agent will not freeze this target: not a separate file system, block mode, or unsafe."""

    reason = "FreezeRefused"


class FrozenBySomeoneElse(SnapshotterError):
    """The file system was already frozen by another tool; we never thaw what we did not freeze."""

    reason = "FrozenBySomeoneElse"
    retryable = True
    default_retry_after = 30.0


class NoFreezeAgent(SnapshotterError):
    """A member is mounted on a node where no freeze agent runs: the group cannot be frozen."""

    reason = "NoFreezeAgent"


class AgentUnavailable(Transient):
    """The agent did not answer (connection refused, TLS failure, timeout)."""

    reason = "AgentUnavailable"


class FreezeNotProven(Transient):
    """The freeze did not cover the whole cut; the class says retry, so that attempt's set is deleted."""

    reason = "FreezeNotProven"


class LeaseState(enum.Enum):
    ACTIVE = "Active"
    THAWED = "Thawed"
    EXPIRED = "Expired"
    THAWED_ON_RESTART = "ThawedOnRestart"
    THAWED_ON_SHUTDOWN = "ThawedOnShutdown"


@dataclass(frozen=True, order=True)
class Target:
    """A volume as one pod mounts it; the agent finds the mount from these two names alone."""

    pod_uid: str
    pv_name: str

    def __post_init__(self) -> None:
        if not _POD_UID.match(self.pod_uid):
            raise FreezeRefused(f"pod UID {self.pod_uid!r} is not a UUID")
        if not _PV_NAME.match(self.pv_name):
            raise FreezeRefused(f"PV name {self.pv_name!r} is not a valid object name")


@dataclass(frozen=True)
class AgentIdentity:
    node_name: str
    boot_id: str
    max_ttl_seconds: float


@dataclass(frozen=True)
class LeaseView:
    lease_id: str
    state: LeaseState
    boot_id: str
    node_name: str
    targets: tuple[Target, ...]
    expires_at_unix: float


class FreezeAgentPort(Protocol):
    """One node's freeze agent, as the operator sees it. Raises only domain errors."""

    async def identity(self) -> AgentIdentity: ...

    async def freeze(self, lease_id: str, targets: Sequence[Target], ttl_seconds: float) -> LeaseView: ...

    async def get_lease(self, lease_id: str) -> LeaseView: ...

    async def thaw(self, lease_id: str) -> tuple[bool, LeaseView]:
        """Thaw; the flag says whether the lease was still held when asked."""


def check_lease_id(lease_id: str) -> str:
    if not _LEASE_ID.match(lease_id):
        raise InvalidRequest(f"lease ID {lease_id!r} must be 1-128 lowercase letters, digits, '.' or '-'")
    return lease_id


# --- the class parameters -------------------------------------------------------------------


@dataclass(frozen=True)
class FreezePolicy:
    level: str = CRASH_CONSISTENT_PER_VOLUME
    budget_seconds: float = DEFAULT_BUDGET_SECONDS
    on_unproven: str = RETRY

    @property
    def freezes(self) -> bool:
        return self.level == FILESYSTEM_CONSISTENT

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> FreezePolicy:
        """The policy a group class asks for; a bad value is a final error naming the key."""
        what = "VolumeGroupSnapshotClass parameter"
        level = parameters.get(LEVEL_PARAMETER, CRASH_CONSISTENT_PER_VOLUME)
        if level not in LEVELS:
            raise InvalidParameter(f"{what} {LEVEL_PARAMETER} {level!r} must be one of {', '.join(LEVELS)}")
        on_unproven = parameters.get(ON_UNPROVEN_PARAMETER, RETRY)
        if on_unproven not in ON_UNPROVEN:
            raise InvalidParameter(
                f"{what} {ON_UNPROVEN_PARAMETER} {on_unproven!r} must be one of {', '.join(ON_UNPROVEN)}"
            )
        raw = parameters.get(BUDGET_PARAMETER, str(DEFAULT_BUDGET_SECONDS))
        try:
            budget = float(raw)
        except ValueError:
            raise InvalidParameter(f"{what} {BUDGET_PARAMETER} {raw!r} is not a number of seconds") from None
        if not 0 < budget <= MAX_TTL_SECONDS:  # also refuses nan and inf
            raise InvalidParameter(
                f"{what} {BUDGET_PARAMETER} {raw!r} must be more than 0 and at most {MAX_TTL_SECONDS:g} seconds"
            )
        return cls(level=level, budget_seconds=budget, on_unproven=on_unproven)


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberMount:
    """Where a group member is mounted: one entry per pod that mounts its PV (none when unmounted)."""

    volume_handle: str
    pv_name: str
    mounts: tuple[tuple[str, str], ...] = ()
    """(node name, pod UID) pairs."""


@dataclass(frozen=True)
class FreezePlan:
    """Targets per node; members no pod mounts need no freeze and appear nowhere."""

    targets: Mapping[str, tuple[Target, ...]]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    def pods(self) -> frozenset[tuple[str, str, str]]:
        """(node, pod UID, PV) triples: what must still be mounted the same way after the cut."""
        return frozenset((n, t.pod_uid, t.pv_name) for n, ts in self.targets.items() for t in ts)


def plan_freeze(members: Iterable[MemberMount], nodes_with_agent: Iterable[str]) -> FreezePlan:
    """Group targets by node, refusing when a mounted member's node has no agent (named in the message)."""
    by_node: dict[str, set[Target]] = {}
    for member in members:
        for node, pod_uid in member.mounts:
            by_node.setdefault(node, set()).add(Target(pod_uid, member.pv_name))
    missing = sorted(set(by_node) - set(nodes_with_agent))
    if missing:
        raise NoFreezeAgent(
            f"no freeze agent answers on node(s) {', '.join(missing)}, where group members are mounted; "
            f"{FILESYSTEM_CONSISTENT} needs one on every such node"
        )
    return FreezePlan({node: tuple(sorted(ts)) for node, ts in by_node.items()})


def lease_ttl(budget_seconds: float, elapsed_seconds: float, agent_max_ttl: float) -> float:
    """The TTL to ask for: what is left of the budget, never more than the agent accepts."""
    remaining = budget_seconds - elapsed_seconds
    if remaining <= 0:
        raise Transient(f"the freeze budget of {budget_seconds:g}s was spent before the freeze began")
    return min(remaining, agent_max_ttl)


# --- the proof and the outcome --------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    proven: bool
    reasons: tuple[str, ...] = ()


def prove(
    plan: FreezePlan,
    boots: Mapping[str, str],
    thawed: Mapping[str, tuple[bool, LeaseView] | None],
    pods_after: Iterable[tuple[str, str, str]],
) -> Proof:
    """Did the freeze cover the cut? ``boots``: the boot ID each node's agent had when it froze;
    ``thawed``: each node's answer to the Thaw sent right after the cut (whether the lease was
    still held, and the lease), ``None`` when there was none; ``pods_after``: (node, pod UID, PV)
    triples mounting the members after the cut. A lease is held only under the boot that set
    it (a restart thaws everything), so "still held when thawed" covers the whole cut."""
    reasons: list[str] = []
    for node in plan.nodes:
        answer = thawed.get(node)
        if answer is None:
            reasons.append(f"node {node}: the lease could not be thawed after the cut")
            continue
        held, lease = answer
        if not held:
            reasons.append(f"node {node}: lease {lease.lease_id} is {lease.state.value}, not Active")
        if lease.state is LeaseState.THAWED_ON_RESTART or lease.boot_id != boots.get(node):
            reasons.append(
                f"node {node}: the agent restarted during the cut (the lease's boot {lease.boot_id})"
            )
    before, now = plan.pods(), frozenset(pods_after)
    for node, pod, pv in sorted(before - now):
        reasons.append(f"node {node}: pod {pod} no longer mounts {pv}")
    for node, pod, pv in sorted(now - before):
        reasons.append(f"node {node}: pod {pod} began to mount {pv} during the cut")
    return Proof(proven=not reasons, reasons=tuple(reasons))


@dataclass(frozen=True)
class Outcome:
    """What to do with a cut set: publish it at ``level``, or (``retry``) delete it and try again."""

    level: str
    retry: bool
    message: str


def outcome(policy: FreezePolicy, proof: Proof | None) -> Outcome:
    """The achieved level, never the requested one. ``proof`` is ``None`` when nothing was frozen."""
    if not policy.freezes:
        return Outcome(CRASH_CONSISTENT_PER_VOLUME, False, "no freeze requested")
    if proof is not None and proof.proven:
        return Outcome(FILESYSTEM_CONSISTENT, False, "every file system was frozen across the cut")
    why = "; ".join(proof.reasons) if proof is not None else "nothing was frozen"
    if policy.on_unproven == PUBLISH_CRASH_CONSISTENT:
        return Outcome(
            CRASH_CONSISTENT_PER_VOLUME, False, f"freeze not proven, published as crash consistent: {why}"
        )
    return Outcome(CRASH_CONSISTENT_PER_VOLUME, True, f"freeze not proven, retrying: {why}")


# --- the freeze window, as the group path sees it ----------------------------------------------

T = TypeVar("T")

RESERVE, FREEZE, CUT, THAWED = "Reserve", "Freeze", "Cut", "Thawed"
"""The steps of a window, recorded before each is acted on (``Thawed``: nothing held any more)."""


@dataclass(frozen=True)
class WindowStep:
    phase: str
    lease_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class WindowResult(Generic[T]):
    outcome: Outcome
    cut: T
    proof: Proof | None
    frozen_seconds: float
    """First freeze sent to last thaw answered; 0 when nothing was frozen."""


class FreezeWindowPort(Protocol):
    """Runs a freeze window with the agents at ``endpoints`` (node name → address)."""

    async def run(
        self,
        endpoints: Mapping[str, str],
        lease_id: str,
        policy: FreezePolicy,
        members: Sequence[MemberMount],
        *,
        record: Callable[[WindowStep], Awaitable[None]],
        reserve: Callable[[], Awaitable[None]],
        cut: Callable[[], Awaitable[T]],
        pods_after: Callable[[], Awaitable[Iterable[tuple[str, str, str]]]],
    ) -> WindowResult[T]: ...

    async def release(self, endpoints: Mapping[str, str], lease_id: str, nodes: Iterable[str]) -> None:
        """Thaw ``lease_id`` wherever it may be held; idempotent, never raises for a gone lease."""


__all__ = [
    "BUDGET_PARAMETER",
    "CRASH_CONSISTENT_PER_VOLUME",
    "CUT",
    "DEFAULT_BUDGET_SECONDS",
    "FILESYSTEM_CONSISTENT",
    "FREEZE",
    "LEVELS",
    "LEVEL_PARAMETER",
    "MAX_TTL_SECONDS",
    "ON_UNPROVEN",
    "ON_UNPROVEN_PARAMETER",
    "PUBLISH_CRASH_CONSISTENT",
    "RESERVE",
    "RETRY",
    "THAWED",
    "AgentIdentity",
    "AgentUnavailable",
    "FreezeAgentPort",
    "FreezeNotProven",
    "FreezePlan",
    "FreezePolicy",
    "FreezeRefused",
    "FreezeWindowPort",
    "FrozenBySomeoneElse",
    "LeaseState",
    "LeaseView",
    "MemberMount",
    "NoFreezeAgent",
    "Outcome",
    "Proof",
    "Target",
    "WindowResult",
    "WindowStep",
    "check_lease_id",
    "lease_ttl",
    "outcome",
    "plan_freeze",
    "prove",
]
