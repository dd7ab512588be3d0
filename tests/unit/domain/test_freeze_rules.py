"""Freeze rules: the class parameters, the plan by node, lease TTLs, the proof and the achieved level."""

from __future__ import annotations

import pytest

from elasticsan_snapshotter.domain import freeze as f
from elasticsan_snapshotter.domain.errors import InvalidRequest, Transient

pytestmark = pytest.mark.unit

UID_A = "0b6f1c52-57a4-4d4e-9a53-1b1c4d7c8e01"
UID_B = "5d2e9f7a-1c3b-4b8e-8f6a-2a9b7c6d5e02"


def test_the_default_policy_is_crash_consistent_and_freezes_nothing() -> None:
    policy = f.FreezePolicy.from_parameters({})
    assert policy == f.FreezePolicy(f.CRASH_CONSISTENT_PER_VOLUME, 30.0, f.RETRY)
    assert not policy.freezes


def test_a_filesystem_consistent_policy_reads_budget_and_what_to_do_unproven() -> None:
    policy = f.FreezePolicy.from_parameters(
        {
            "consistency": "FilesystemConsistent",
            "freezeBudgetSeconds": "12.5",
            "onUnprovenFreeze": "PublishCrashConsistent",
        }
    )
    assert policy.freezes
    assert policy.budget_seconds == 12.5
    assert policy.on_unproven == f.PUBLISH_CRASH_CONSISTENT


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"consistency": "ApplicationConsistent"}, "consistency 'ApplicationConsistent' must be one of"),
        ({"onUnprovenFreeze": "Ignore"}, "onUnprovenFreeze 'Ignore' must be one of"),
        ({"freezeBudgetSeconds": "soon"}, "is not a number"),
        ({"freezeBudgetSeconds": "0"}, "more than 0 and at most 120"),
        ({"freezeBudgetSeconds": "121"}, "more than 0 and at most 120"),
    ],
)
def test_bad_parameters_are_refused_with_the_key(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        f.FreezePolicy.from_parameters(parameters)


def test_targets_are_checked_so_no_path_can_be_smuggled_in() -> None:
    with pytest.raises(f.FreezeRefused, match="not a UUID"):
        f.Target("../..", "pv")
    with pytest.raises(f.FreezeRefused, match="not a valid object name"):
        f.Target(UID_A, "pv/../../etc")


def test_the_plan_groups_targets_by_node_and_skips_unmounted_members() -> None:
    members = [
        f.MemberMount("vol-1", "pv-1", (("node-1", UID_A),)),
        f.MemberMount("vol-2", "pv-2", (("node-2", UID_B), ("node-1", UID_A))),
        f.MemberMount("vol-3", "pv-3"),
    ]
    plan = f.plan_freeze(members, ["node-1", "node-2", "node-3"])
    assert plan.nodes == ("node-1", "node-2")
    assert plan.targets["node-1"] == (f.Target(UID_A, "pv-1"), f.Target(UID_A, "pv-2"))
    assert plan.pods() == {("node-1", UID_A, "pv-1"), ("node-1", UID_A, "pv-2"), ("node-2", UID_B, "pv-2")}


def test_a_member_on_a_node_without_an_agent_fails_naming_the_node() -> None:
    members = [f.MemberMount("vol-1", "pv-1", (("node-7", UID_A),))]
    with pytest.raises(f.NoFreezeAgent, match="node-7"):
        f.plan_freeze(members, ["node-1"])


def test_the_ttl_is_the_remaining_budget_capped_by_the_agent() -> None:
    assert f.lease_ttl(30, 2.5, 120) == 27.5
    assert f.lease_ttl(30, 0, 10) == 10
    with pytest.raises(Transient, match="spent"):
        f.lease_ttl(30, 30, 120)


PLAN = f.FreezePlan({"node-1": (f.Target(UID_A, "pv-1"),), "node-2": (f.Target(UID_B, "pv-2"),)})
PODS = [("node-1", UID_A, "pv-1"), ("node-2", UID_B, "pv-2")]


def lease(
    node: str, state: f.LeaseState = f.LeaseState.THAWED, boot: str | None = None
) -> tuple[bool, f.LeaseView]:
    """One node's answer to the thaw after the cut: whether the lease was still held, and the lease."""
    return state is f.LeaseState.THAWED, f.LeaseView("lease", state, boot or f"boot-{node}", node, (), 0.0)


def test_the_proof_holds_when_every_lease_was_held_until_the_thaw_with_the_same_pods() -> None:
    leases = {"node-1": lease("node-1"), "node-2": lease("node-2")}
    proof = f.prove(PLAN, {"node-1": "boot-node-1", "node-2": "boot-node-2"}, leases, PODS)
    assert proof == f.Proof(True)


def test_the_proof_fails_and_says_why() -> None:
    boots = {"node-1": "boot-node-1", "node-2": "boot-node-2"}
    expired = {"node-1": lease("node-1", f.LeaseState.EXPIRED), "node-2": lease("node-2")}
    assert f.prove(PLAN, boots, expired, PODS).reasons == ("node node-1: lease lease is Expired, not Active",)
    restarted = {"node-1": lease("node-1"), "node-2": lease("node-2", f.LeaseState.THAWED_ON_RESTART)}
    reasons = f.prove(PLAN, boots, restarted, PODS).reasons
    assert reasons == (
        "node node-2: lease lease is ThawedOnRestart, not Active",
        "node node-2: the agent restarted during the cut (the lease's boot boot-node-2)",
    )
    other_boot = {"node-1": lease("node-1"), "node-2": lease("node-2", boot="boot-other")}
    assert "restarted" in f.prove(PLAN, boots, other_boot, PODS).reasons[0]
    unread = {"node-1": lease("node-1"), "node-2": None}
    assert "could not be thawed" in f.prove(PLAN, boots, unread, PODS).reasons[0]
    moved = [("node-1", UID_A, "pv-1"), ("node-3", UID_B, "pv-2")]
    reasons = f.prove(PLAN, boots, {"node-1": lease("node-1"), "node-2": lease("node-2")}, moved).reasons
    assert reasons == (
        f"node node-2: pod {UID_B} no longer mounts pv-2",
        f"node node-3: pod {UID_B} began to mount pv-2 during the cut",
    )


def test_the_outcome_is_the_achieved_level_never_the_requested_one() -> None:
    asked = f.FreezePolicy(f.FILESYSTEM_CONSISTENT)
    degrade = f.FreezePolicy(f.FILESYSTEM_CONSISTENT, on_unproven=f.PUBLISH_CRASH_CONSISTENT)
    failed = f.Proof(False, ("node node-1: lease lease is Expired, not Active",))
    assert f.outcome(asked, f.Proof(True)) == f.Outcome(
        f.FILESYSTEM_CONSISTENT, False, f.outcome(asked, f.Proof(True)).message
    )
    retry = f.outcome(asked, failed)
    assert (retry.level, retry.retry) == (f.CRASH_CONSISTENT_PER_VOLUME, True)
    assert "Expired" in retry.message
    published = f.outcome(degrade, failed)
    assert (published.level, published.retry) == (f.CRASH_CONSISTENT_PER_VOLUME, False)
    assert f.outcome(f.FreezePolicy(), None).level == f.CRASH_CONSISTENT_PER_VOLUME
    assert f.outcome(asked, None).retry


def test_lease_ids_are_plain_names() -> None:
    assert f.check_lease_id("group-1.attempt-2") == "group-1.attempt-2"
    for bad in ("", "Upper", "a/b", "-a", "a" * 129):
        with pytest.raises(InvalidRequest):
            f.check_lease_id(bad)
