"""ElasticSanSnapshotSchedule in mode Group, end to end: one VolumeGroupSnapshot per tick over labelled claims.

The real API server, snapshot-controller (with its group controller), the operator and the emulator;
``@every`` ticks of seconds under a lowered minimum interval, as in test_schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
from export_scenario import install_crd
from group_scenario import GROUPS, GROUPS_VERSION, Groups, group_snapshots
from kubernetes import client as k8s
from operator_scenario import Kube, StartOperator
from schedule_scenario import (
    ANN_TIME,
    LABEL_UID,
    MINIMUM_INTERVAL,
    SCHEDULE_CRD,
    WINDOW,
    Schedules,
    parse_time,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from waiting import wait_for

EMULATOR_ARGS = ("--snapshot-rate-window", WINDOW)
OPERATOR_ENV = {"ESS_SCHEDULE_MINIMUM_INTERVAL": MINIMUM_INTERVAL, "ESS_SNAPSHOT_WINDOW": WINDOW}
KEEP_LAST = 2


def schedule_groups(groups: Groups, uid: str) -> list[dict[str, Any]]:
    """The VolumeGroupSnapshots the schedule with this UID made (those being deleted excluded)."""
    found = groups.custom.list_namespaced_custom_object(
        GROUPS, GROUPS_VERSION, groups.namespace, "volumegroupsnapshots", label_selector=f"{LABEL_UID}={uid}"
    )["items"]
    return [g for g in found if not g["metadata"].get("deletionTimestamp")]


def test_group_schedule_runs_trims_and_makes_one_group_per_tick_across_a_restart(
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    api_client: k8s.ApiClient,
    source_volume: Callable[..., Any],
) -> None:
    install_crd(api_client, SCHEDULE_CRD)
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete")
    groups.labelled_claims(source_volume, storage_class, 2, {"app": "scheduled"})
    emulator.admin.reset_counters()
    schedules = Schedules(api_client)
    operator = start_operator(**OPERATOR_ENV)
    seen: dict[str, str] = {}  # every group ever listed: UID -> scheduled time

    def watch(enough: Callable[[list[dict[str, Any]]], bool]) -> Callable[[], bool]:
        def probe() -> bool:
            current = schedule_groups(groups, uid)
            seen.update({g["metadata"]["uid"]: g["metadata"]["annotations"][ANN_TIME] for g in current})
            return enough(current)

        return probe

    try:
        uid = schedules.create(
            namespace,
            "grouped",
            schedule="@every 5s",
            mode="Group",
            source={"selector": {"matchLabels": {"app": "scheduled"}}},
            groupSnapshotClassName=group_class,
            jitterSeconds=0,
            startingDeadlineSeconds=30,
            retention={"keepLast": KEEP_LAST},
        )["metadata"]["uid"]
        wait_for("the first scheduled group", watch(bool), timeout=90)
        operator.kill()  # SIGKILL right after a create: the status may not say the tick was handled
        operator = start_operator(**OPERATOR_ENV)
        wait_for("five scheduled groups", watch(lambda _: len(seen) >= 5), timeout=150)
        schedules.patch(namespace, "grouped", {"suspend": True})
        wait_for(
            f"retention to leave {KEEP_LAST} ready groups",
            watch(
                lambda current: (
                    len(current) == KEEP_LAST
                    and all((g.get("status") or {}).get("readyToUse") for g in current)
                )
            ),
            timeout=90,
        )
        kept = schedule_groups(groups, uid)
        # Exactly one group per tick, across the kill: no tick was made twice, not even after a delete.
        ticks = sorted(seen.values())
        assert len(ticks) == len(set(ticks)), ticks
        assert sorted(g["metadata"]["annotations"][ANN_TIME] for g in kept) == ticks[-KEEP_LAST:]
        for group in kept:
            assert group["spec"]["volumeGroupSnapshotClassName"] == group_class
            members = groups.wait_members_ready(group["metadata"]["name"], 2)
            claims = sorted(vs["spec"]["source"]["persistentVolumeClaimName"] for vs in members)
            assert claims == ["member-0", "member-1"]
        # Azure: one snapshot per member per group ever made; trimmed groups took theirs along.
        assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 2 * len(seen)
        handles = [
            groups.content_of(g["metadata"]["name"])["status"]["volumeGroupSnapshotHandle"] for g in kept
        ]
        in_azure = wait_for(
            "the trimmed groups' Elastic SAN snapshots to be deleted",
            lambda: (
                (found := [s.name for s in group_snapshots(esan)]) and len(found) == 2 * KEEP_LAST and found
            ),
            timeout=90,
        )
        assert all(any(name.startswith(f"{h}-") for h in handles) for name in in_azure), (in_azure, handles)
        status = schedules.status(namespace, "grouped")
        assert status["readyCount"] == 2 * KEEP_LAST
        assert {t["claim"] for t in status["targets"]} == {"member-0", "member-1"}
    finally:
        operator.stop()


def test_a_group_whose_member_is_restored_from_outlives_retention(
    start_operator: StartOperator,
    kube: Kube,
    namespace: str,
    api_client: k8s.ApiClient,
    source_volume: Callable[..., Any],
) -> None:
    install_crd(api_client, SCHEDULE_CRD)
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete")
    groups.labelled_claims(source_volume, storage_class, 2, {"app": "held"})
    schedules = Schedules(api_client)
    operator = start_operator(**OPERATOR_ENV)
    try:
        uid = schedules.create(
            namespace,
            "held",
            schedule="@every 5s",
            mode="Group",
            source={"selector": {"matchLabels": {"app": "held"}}},
            groupSnapshotClassName=group_class,
            jitterSeconds=0,
            startingDeadlineSeconds=30,
            retention={"keepLast": 1},
        )["metadata"]["uid"]
        first = wait_for("the first scheduled group", lambda: schedule_groups(groups, uid), timeout=90)[0]
        held_group, held_tick = first["metadata"]["name"], first["metadata"]["annotations"][ANN_TIME]
        members = groups.wait_members_ready(held_group, 2)
        member = next(
            vs["metadata"]["name"]
            for vs in members
            if vs["spec"]["source"]["persistentVolumeClaimName"] == "member-1"
        )
        # A restore from one member on a class that does not exist: the claim stays Pending.
        kube.create_claim(namespace, "restore", "no-such-class", snapshot=member)

        def trimmed_around_the_held_group() -> bool:
            current = schedule_groups(groups, uid)
            others = [g for g in current if g["metadata"]["name"] != held_group]
            ready = [g for g in others if (g.get("status") or {}).get("readyToUse")]
            latest = max((g["metadata"]["annotations"][ANN_TIME] for g in ready), default=held_tick)
            # keepLast 1 left one newer ready group, three ticks past the held one: the hold worked.
            held = any(g["metadata"]["name"] == held_group for g in current)
            return held and len(ready) == 1 and latest >= _plus(held_tick, 15)

        wait_for(
            "retention to trim the newer groups and keep the held one", trimmed_around_the_held_group, 120
        )
        blocked = wait_for(
            "RetentionBlocked",
            lambda: (
                (c := schedules.condition(namespace, "held", "RetentionBlocked"))
                and c["status"] == "True"
                and c
            ),
            timeout=30,
        )
        assert (
            f"{held_group} (member {member} is the dataSource of a claim that is not Bound yet)"
            in (blocked["message"])
        ), blocked
        assert groups.get(held_group) is not None
        kube.core.delete_namespaced_persistent_volume_claim("restore", namespace)
        wait_for(
            "the released group to be trimmed",
            lambda: held_group not in {g["metadata"]["name"] for g in schedule_groups(groups, uid)},
            timeout=60,
        )
        schedules.patch(namespace, "held", {"suspend": True})
    finally:
        operator.stop()


def _plus(stamp: str, seconds: int) -> str:
    return (parse_time(stamp) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
