"""The group snapshotter's FilesystemConsistent path: mounts and agents found through the API, the
window's steps recorded on the content, the achieved level published, unproven sets retried or
degraded, and a lease an earlier operator held released first.

The window here is scripted (it runs the group path's own reserve and cut, and answers with a
chosen proof); the coordinator itself is tested in tests/unit/freeze and, with real agents, in
tests/integration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import pytest
from test_group_snapshotter import HANDLE, World

from elasticsan_snapshotter.domain import freeze
from elasticsan_snapshotter.domain.errors import Transient
from elasticsan_snapshotter.domain.freeze import (
    CUT,
    FREEZE,
    RESERVE,
    THAWED,
    FreezePolicy,
    MemberMount,
    Proof,
    WindowResult,
    WindowStep,
)
from elasticsan_snapshotter.kubernetes.api import KubeApi
from elasticsan_snapshotter.kubernetes.group_freeze import FreezeAgents, agent_endpoint
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_GROUP_BEING_CREATED,
    ANN_GROUP_CONSISTENCY,
    ANN_GROUP_FREEZE_LEASE,
    ANN_GROUP_FREEZE_RETRY,
    ANN_GROUP_FREEZE_WINDOW,
)
from elasticsan_snapshotter.kubernetes.workqueue import Requeue

pytestmark = pytest.mark.unit

T = TypeVar("T")
UIDS = ["0b6f1c52-57a4-4d4e-9a53-1b1c4d7c8e01", "5d2e9f7a-1c3b-4b8e-8f6a-2a9b7c6d5e02"]
AGENT_LABELS = {"app.kubernetes.io/component": "freeze-agent"}


class Stop(BaseException):
    """The operator process dies here (nothing after it runs, not even a thaw)."""


class ScriptedWindow:
    """Runs the group path's steps in the coordinator's order and answers with a chosen proof."""

    def __init__(self) -> None:
        self.proof = Proof(True)
        self.stop_in_cut = False
        self.runs: list[tuple[dict[str, str], str, list[MemberMount]]] = []
        self.released: list[tuple[str, tuple[str, ...]]] = []
        self.annotations_seen: list[str | None] = []

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
    ) -> WindowResult[T]:
        self.runs.append((dict(endpoints), lease_id, list(members)))
        plan = freeze.plan_freeze(members, endpoints)
        await record(WindowStep(RESERVE, lease_id, plan.nodes))
        await reserve()
        await record(WindowStep(FREEZE, lease_id, plan.nodes))
        await record(WindowStep(CUT, lease_id, plan.nodes))
        result = await cut()
        if self.stop_in_cut:
            raise Stop
        await record(WindowStep(THAWED, lease_id, plan.nodes))
        assert set(await pods_after()) == plan.pods()
        return WindowResult(
            freeze.outcome(policy, self.proof), result, self.proof, 0.25 if plan.nodes else 0.0
        )

    async def release(self, endpoints: Mapping[str, str], lease_id: str, nodes: Iterable[str]) -> None:
        self.released.append((lease_id, tuple(nodes)))


def frozen_world(
    *, on_unproven: str = freeze.RETRY, agents_on: Sequence[str] = ("node-a", "node-b")
) -> tuple[World, ScriptedWindow]:
    world = World(volumes=2)
    window = ScriptedWindow()
    world.reconciler.freeze_agents = FreezeAgents(
        api=cast(KubeApi, world.kube),
        window=window,
        namespace="ess",
        selector="app.kubernetes.io/component=freeze-agent",
    )
    world.content()["spec"]["volumeGroupSnapshotClassName"] = "frozen"
    world.classes.apply(
        "ADDED",
        {
            "metadata": {"name": "frozen"},
            "parameters": {"consistency": "FilesystemConsistent", "onUnprovenFreeze": on_unproven},
        },
    )
    for i, node in enumerate(("node-a", "node-b")):
        world.kube.objects[("persistentvolumes", "", f"pv{i}")]["spec"]["claimRef"] = {
            "namespace": "app",
            "name": f"claim{i}",
        }
        world.kube.put("pods", pod(f"app-{i}", "app", node, UIDS[i], claim=f"claim{i}"))
    world.kube.put("volumegroupsnapshots", {"metadata": {"name": "db", "namespace": "ns", "uid": "vgs-uid"}})
    world.kube.put(
        "pods", pod("done", "app", "node-a", "11111111-1111-4111-8111-111111111111", "Succeeded", "claim0")
    )
    for i, node in enumerate(agents_on):
        agent = pod(f"agent-{i}", "ess", node, f"aaaaaaaa-0000-4000-8000-00000000000{i}", labels=AGENT_LABELS)
        agent["spec"]["containers"] = [
            {"name": "freeze-agent", "ports": [{"name": "freeze", "containerPort": 7443 + i}]}
        ]
        agent["status"]["podIP"] = f"10.0.0.{i + 1}"
        world.kube.put("pods", agent)
    return world, window


def pod(
    name: str,
    namespace: str,
    node: str,
    uid: str,
    phase: str = "Running",
    claim: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}] if claim else []
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}},
        "spec": {"nodeName": node, "volumes": volumes, "containers": []},
        "status": {"phase": phase},
    }


def backed_off(world: World) -> None:
    """As if the back-off a failed attempt wrote had passed."""
    annotations = world.content()["metadata"]["annotations"]
    retry = json.loads(annotations[ANN_GROUP_FREEZE_RETRY])
    annotations[ANN_GROUP_FREEZE_RETRY] = json.dumps(retry | {"notBefore": 0})


def events(world: World) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in world.kube.events]


async def test_a_proven_freeze_publishes_filesystem_consistent() -> None:
    world, window = frozen_world()
    assert await world.reconcile() is None
    [(endpoints, lease, members)] = window.runs
    assert endpoints == {"node-a": "10.0.0.1:7443", "node-b": "10.0.0.2:7444"}
    assert lease.startswith(f"{HANDLE}-")
    assert [m.mounts for m in members] == [(("node-a", UIDS[0]),), (("node-b", UIDS[1]),)]
    assert [m.pv_name for m in members] == ["pv0", "pv1"]
    annotations = world.content()["metadata"]["annotations"]
    assert annotations[ANN_GROUP_CONSISTENCY] == freeze.FILESYSTEM_CONSISTENT
    assert annotations[ANN_GROUP_FREEZE_WINDOW] == "0.250"
    assert ANN_GROUP_FREEZE_LEASE not in annotations
    assert ANN_GROUP_BEING_CREATED not in annotations
    assert ("Normal", "GroupSnapshotCut") in events(world)
    assert "FilesystemConsistent" in world.kube.events[-1]["message"]
    vgs = world.kube.objects[("volumegroupsnapshots", "ns", "db")]
    assert vgs["metadata"]["annotations"][ANN_GROUP_CONSISTENCY] == freeze.FILESYSTEM_CONSISTENT
    assert len(await world.members_in_azure()) == 2


async def test_each_step_is_recorded_on_the_content_before_it_is_acted_on() -> None:
    world, window = frozen_world()
    seen: list[str | None] = []
    original = world.reconciler._cut

    async def cut(members: Any) -> Any:
        seen.append(world.content()["metadata"]["annotations"].get(ANN_GROUP_FREEZE_LEASE))
        return await original(members)

    world.reconciler._cut = cut  # type: ignore[method-assign]
    assert await world.reconcile() is None
    [recorded] = seen
    assert recorded is not None
    assert json.loads(recorded) == {"lease": window.runs[0][1], "phase": CUT, "nodes": ["node-a", "node-b"]}


async def test_an_unproven_freeze_with_retry_deletes_the_set_and_tries_again() -> None:
    world, window = frozen_world()
    window.proof = Proof(False, ("node node-b: lease x is Expired, not Active",))
    outcome = await world.reconcile()
    assert isinstance(outcome, Requeue)
    assert await world.members_in_azure() == []
    assert "volumeGroupSnapshotHandle" not in (world.content().get("status") or {})
    assert ("Warning", "FreezeNotProven") in events(world)
    assert "Expired" in world.kube.events[-1]["message"]
    window.proof = Proof(True)
    backed_off(world)
    assert await world.reconcile() is None
    assert world.content()["metadata"]["annotations"][ANN_GROUP_CONSISTENCY] == freeze.FILESYSTEM_CONSISTENT
    assert len(window.runs) == 2


async def test_an_unproven_freeze_with_publish_is_published_crash_consistent() -> None:
    world, window = frozen_world(on_unproven=freeze.PUBLISH_CRASH_CONSISTENT)
    window.proof = Proof(False, ("node node-a: the agent restarted during the cut",))
    assert await world.reconcile() is None
    annotations = world.content()["metadata"]["annotations"]
    assert annotations[ANN_GROUP_CONSISTENCY] == freeze.CRASH_CONSISTENT_PER_VOLUME
    assert ("Warning", "FreezeNotProven") in events(world)
    assert world.content()["status"]["readyToUse"] is True


async def test_a_member_on_a_node_without_an_agent_fails_the_group_naming_the_node() -> None:
    world, _ = frozen_world(agents_on=("node-a",))
    assert await world.reconcile() is None
    message = world.content()["status"]["error"]["message"]
    assert "node-b" in message
    assert "node-a" not in message
    assert world.azure.call_count("create_snapshot") == 0


async def test_unmounted_members_need_no_agent() -> None:
    world, window = frozen_world(agents_on=())
    world.kube.objects = {k: v for k, v in world.kube.objects.items() if k[0] != "pods"}
    assert await world.reconcile() is None
    [(_, _, members)] = window.runs
    assert all(m.mounts == () for m in members)
    assert len(await world.members_in_azure()) == 2
    assert "no pod mounts any member" in world.kube.events[-1]["message"]


@pytest.mark.parametrize(
    ("on_unproven", "level"),
    [
        (freeze.RETRY, freeze.FILESYSTEM_CONSISTENT),
        (freeze.PUBLISH_CRASH_CONSISTENT, freeze.CRASH_CONSISTENT_PER_VOLUME),
    ],
)
async def test_a_restarted_operator_releases_the_recorded_lease_and_never_claims_the_old_cut(
    on_unproven: str, level: str
) -> None:
    world, window = frozen_world(on_unproven=on_unproven)
    window.stop_in_cut = True
    with pytest.raises(Stop):
        await world.reconcile()
    held = json.loads(world.content()["metadata"]["annotations"][ANN_GROUP_FREEZE_LEASE])
    assert held["phase"] == CUT
    assert len(await world.members_in_azure()) == 2

    window.stop_in_cut = False
    # A transient error right after the restart must not make the operator forget the stopped attempt.
    world.azure.fail_next("list_snapshots", Transient("busy", retry_after=1.0))
    assert await world.reconcile() == Requeue(1.0)
    assert ANN_GROUP_FREEZE_LEASE in world.content()["metadata"]["annotations"]
    backed_off(world)
    assert await world.reconcile() is None
    assert set(window.released) == {(held["lease"], ("node-a", "node-b"))}  # only what was frozen
    annotations = world.content()["metadata"]["annotations"]
    assert ANN_GROUP_FREEZE_LEASE not in annotations
    assert annotations[ANN_GROUP_CONSISTENCY] == level
    if on_unproven == freeze.RETRY:
        # The old members were deleted and cut again inside a new, proven window.
        assert world.azure.call_count("delete_snapshot") == 2
        assert len(window.runs) == 3  # stopped, failed in its reserve, proven
    else:
        assert len(window.runs) == 1
        assert world.azure.call_count("delete_snapshot") == 0


async def test_a_failed_attempt_holds_the_next_one_off_though_its_own_writes_wake_it_at_once() -> None:
    world, window = frozen_world()
    window.proof = Proof(False, ("node node-b: lease x is Expired, not Active",))
    assert isinstance(await world.reconcile(), Requeue)
    first = json.loads(world.content()["metadata"]["annotations"][ANN_GROUP_FREEZE_RETRY])
    assert first["attempts"] == 1
    # The attempt's annotation writes are watch events: the next reconcile comes at once, and waits.
    held = await world.reconcile()
    assert isinstance(held, Requeue)
    assert held.after is not None
    assert 0 < held.after <= 5  # FreezeNotProven is transient: at least its 5 s
    assert len(window.runs) == 1
    backed_off(world)
    await world.reconcile()
    second = json.loads(world.content()["metadata"]["annotations"][ANN_GROUP_FREEZE_RETRY])
    assert second["attempts"] == 2  # counted, so that the wait doubles from the third on
    assert len(window.runs) == 2
    # A file system frozen by another tool asks for its own, longer wait.
    backed_off(world)
    world.reconciler.freeze_agents.window = BusyWindow()  # type: ignore[union-attr]
    await world.reconcile()
    busy = json.loads(world.content()["metadata"]["annotations"][ANN_GROUP_FREEZE_RETRY])
    assert busy["notBefore"] - time.time() > 25
    # Once published, the back-off is gone with the rest of the freeze's annotations.
    backed_off(world)
    world.reconciler.freeze_agents.window = window  # type: ignore[union-attr]
    window.proof = Proof(True)
    assert await world.reconcile() is None
    assert ANN_GROUP_FREEZE_RETRY not in world.content()["metadata"]["annotations"]


class BusyWindow(ScriptedWindow):
    async def run(self, *args: Any, **kwargs: Any) -> Any:
        raise freeze.FrozenBySomeoneElse("node-a: /x is already frozen by someone else; left as it is")


def test_an_agent_pod_serves_only_when_running_with_an_ip_and_its_port() -> None:
    agent = pod("a", "ess", "node-a", UIDS[0])
    agent["spec"]["containers"] = [{"ports": [{"name": "freeze", "containerPort": 7443}]}]
    assert agent_endpoint(agent) is None  # no pod IP yet
    agent["status"]["podIP"] = "fd00::1"
    assert agent_endpoint(agent) == ("node-a", "[fd00::1]:7443")
    agent["status"]["phase"] = "Pending"
    assert agent_endpoint(agent) is None
    agent["status"]["phase"] = "Running"
    agent["spec"]["containers"] = [{"ports": [{"name": "metrics", "containerPort": 8082}]}]
    assert agent_endpoint(agent) is None
