"""The Kubernetes side of a FilesystemConsistent group: where members are mounted, where the agents
are, and the lease record on the group content.

* **Mounts.** A member's PV names its claim (``spec.claimRef``); the pods of that namespace whose
  ``spec.volumes`` use the claim and that have a node (``spec.nodeName``) and have not ended mount
  it. The agent finds the mount itself from the pod's UID and the PV's name.
* **Agents.** The freeze agent DaemonSet's pods, listed by label in their namespace (the
  operator's): a pod that is Running with a pod IP serves its node at ``<pod IP>:<its container
  port named "freeze">``. A node without such a pod has no agent.
* **Record.** Before each step of the window the lease, the step and the nodes go into the
  annotation ``elasticsan.snapshotter.dev/freeze-lease``, and it is removed once everything is
  thawed; a restarted operator that finds it releases the lease before anything else.
* **Back-off.** A failed freezing attempt writes when the next may start into
  ``elasticsan.snapshotter.dev/freeze-retry``: the annotation writes of an attempt are watch
  events that would otherwise start the next one at once, freezing the applications' file
  systems again and again while, say, one of them is frozen by another tool.
* **Window.** ``frozen_cut`` runs the coordinator (behind ``FreezeWindowPort``) with the group
  path's reserve and cut; an unproven set is deleted and retried, or published at the lower
  level, as the class says, and so is the set of an attempt a stopped operator left.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.domain.freeze import (
    CUT,
    FILESYSTEM_CONSISTENT,
    FREEZE,
    PUBLISH_CRASH_CONSISTENT,
    THAWED,
    FreezeNotProven,
    FreezePolicy,
    FreezeWindowPort,
    MemberMount,
    Proof,
    WindowResult,
    WindowStep,
    outcome,
)
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.resources import ANN_GROUP_FREEZE_LEASE, ANN_GROUP_FREEZE_RETRY, POD

logger = logging.getLogger(__name__)

T = TypeVar("T")

AGENT_PORT_NAME = "freeze"
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0
_ENDED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class MemberVolume:
    """A member's PV and the claim it is bound to (None: no claim, so no pod can mount it)."""

    volume_handle: str
    pv_name: str
    claim: tuple[str, str] | None


def member_volume(volume_handle: str, pv: Body) -> MemberVolume:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    claim = (str(ref["namespace"]), str(ref["name"])) if ref.get("namespace") and ref.get("name") else None
    return MemberVolume(volume_handle, str(pv["metadata"]["name"]), claim)


def _uses_claim(pod: Body, claim: str) -> bool:
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in volumes)


def agent_endpoint(pod: Body) -> tuple[str, str] | None:
    """(node, ``<pod IP>:<port>``) of a serving agent pod, or None."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    node, ip = spec.get("nodeName"), status.get("podIP")
    if (
        not node
        or not ip
        or status.get("phase") != "Running"
        or (pod.get("metadata") or {}).get("deletionTimestamp")
    ):
        return None
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == AGENT_PORT_NAME and port.get("containerPort"):
                host = f"[{ip}]" if ":" in ip else ip
                return str(node), f"{host}:{int(port['containerPort'])}"
    return None


def recorded_step(body: Body) -> WindowStep | None:
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(ANN_GROUP_FREEZE_LEASE)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return WindowStep(str(data["phase"]), str(data["lease"]), tuple(str(n) for n in data["nodes"]))
    except (ValueError, KeyError, TypeError):
        logger.error("unreadable %s annotation %r; leases end at their TTL", ANN_GROUP_FREEZE_LEASE, raw)
        return None


def _retry(body: Body) -> tuple[int, float]:
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(ANN_GROUP_FREEZE_RETRY)
    try:
        data = json.loads(raw) if raw else {}
        return int(data.get("attempts", 0)), float(data.get("notBefore", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0, 0.0


def held_off(body: Body, now: float) -> float:
    """Seconds until the next freezing attempt of this group may start (0: now)."""
    return max(0.0, _retry(body)[1] - now)


def retry_record(body: Body, error: SnapshotterError, now: float) -> str:
    """The back-off after a failed attempt: the error's own delay, or doubling per attempt."""
    attempts = _retry(body)[0] + 1
    delay = max(error.retry_after or 0.0, min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS))
    return json.dumps({"attempts": attempts, "notBefore": now + delay})


def step_record(step: WindowStep) -> str | None:
    """The annotation value for ``step``; None (remove it) once nothing is held any more."""
    if step.phase == THAWED:
        return None
    return json.dumps({"lease": step.lease_id, "phase": step.phase, "nodes": list(step.nodes)})


@dataclass(kw_only=True)
class FreezeAgents:
    """Where the freeze agents are, and the window that runs with them."""

    api: KubeApi
    window: FreezeWindowPort
    namespace: str
    selector: str

    async def endpoints(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for pod in await self.api.list(POD, self.namespace, label_selector=self.selector or None):
            endpoint = agent_endpoint(pod)
            if endpoint is not None:
                found[endpoint[0]] = endpoint[1]
        return found

    async def mounts(self, members: Sequence[MemberVolume]) -> list[MemberMount]:
        """Each member with the (node, pod UID) pairs of the pods that mount it now."""
        pods: dict[str, list[Body]] = {}
        for namespace in sorted({m.claim[0] for m in members if m.claim}):
            pods[namespace] = await self.api.list(POD, namespace)
        found = []
        for member in members:
            mounts: set[tuple[str, str]] = set()
            if member.claim:
                namespace, claim = member.claim
                for pod in pods[namespace]:
                    node = (pod.get("spec") or {}).get("nodeName")
                    phase = (pod.get("status") or {}).get("phase")
                    if node and phase not in _ENDED and _uses_claim(pod, claim):
                        mounts.add((str(node), str(pod["metadata"]["uid"])))
            found.append(MemberMount(member.volume_handle, member.pv_name, tuple(sorted(mounts))))
        return found

    async def pods_after(self, members: Sequence[MemberVolume]) -> Iterable[tuple[str, str, str]]:
        return [(n, uid, m.pv_name) for m in await self.mounts(members) for n, uid in m.mounts]

    async def frozen_cut(
        self,
        handle: str,
        policy: FreezePolicy,
        volumes: Sequence[MemberVolume],
        interrupted: WindowStep | None,
        *,
        record: Callable[[str | None], Awaitable[None]],
        reserve: Callable[[bool], Awaitable[None]],
        cut: Callable[[], Awaitable[T]],
        discard: Callable[[], Awaitable[None]],
    ) -> WindowResult[T]:
        """Cut the group ``handle`` inside a freeze window. ``interrupted``: what an earlier operator
        recorded; ``record`` writes the annotation value; ``reserve(fresh)`` takes the budget (and,
        when fresh, deletes members cut outside this window); ``discard`` deletes this attempt's set."""
        held = interrupted is not None and interrupted.phase in (FREEZE, CUT)
        if interrupted is not None and held and policy.on_unproven == PUBLISH_CRASH_CONSISTENT:
            # What the stopped attempt cut is unproven; the class says publish it at the lower level.
            metrics.FREEZE_PROOFS_FAILED.inc()
            proof = Proof(False, (f"the operator stopped while lease {interrupted.lease_id} was held",))
            await reserve(False)
            return WindowResult(outcome(policy, proof), await cut(), proof, 0.0)

        async def write(step: WindowStep) -> None:
            await record(step_record(step))

        result = await self.window.run(
            await self.endpoints(),
            f"{handle}-{secrets.token_hex(4)}",
            policy,
            await self.mounts(volumes),
            record=write,
            reserve=lambda: reserve(True),
            cut=cut,
            pods_after=lambda: self.pods_after(volumes),
        )
        if result.outcome.retry:
            await discard()  # an unproven set is not kept: the next attempt cuts anew
            raise FreezeNotProven(result.outcome.message)
        return result

    async def release(self, step: WindowStep) -> None:
        """Thaw a recorded lease; before the Freeze step nothing was sent, so nothing is held."""
        if step.phase in (FREEZE, CUT) and step.nodes:
            await self.window.release(await self.endpoints(), step.lease_id, step.nodes)


def level_meaning(level: str, frozen_seconds: float, cut_window: float) -> str:
    """What the level achieved by a group means, for its Event."""
    if level == FILESYSTEM_CONSISTENT and not frozen_seconds:
        return "no pod mounts any member, so nothing could write to them during the cut"
    if level == FILESYSTEM_CONSISTENT:
        return (
            "every mounted member's file system was frozen from before the first cut until the last had "
            f"succeeded ({frozen_seconds:.3f} s frozen), and the freeze was proven"
        )
    return (
        f"each member is crash-consistent on its own and all were cut within {cut_window:.3f} s (first to "
        "last accepted PUT); writes in that window may be in some members and not in others"
    )


__all__ = [
    "AGENT_PORT_NAME",
    "FreezeAgents",
    "MemberVolume",
    "agent_endpoint",
    "held_off",
    "level_meaning",
    "member_volume",
    "recorded_step",
    "retry_record",
    "step_record",
]
