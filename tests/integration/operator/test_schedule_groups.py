"""ElasticSanSnapshotSchedule in mode Group, end to end: one VolumeGroupSnapshot per tick over labelled claims.

The real API server, snapshot-controller (with its group controller), the operator and the emulator;
``@every`` ticks of seconds under a lowered minimum interval, as in test_schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from export_scenario import Exports, disk_snapshot, install_crd
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
ANN_CLAIM = "elasticsan.snapshotter.dev/claim"


def schedule_groups(groups: Groups, uid: str) -> list[dict[str, Any]]:
    """The VolumeGroupSnapshots the schedule with this UID made (those being deleted excluded)."""
    found = groups.custom.list_namespaced_custom_object(
        GROUPS, GROUPS_VERSION, groups.namespace, "volumegroupsnapshots", label_selector=f"{LABEL_UID}={uid}"
    )["items"]
    return [g for g in found if not g["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="module", autouse=True)
def crds(api_client: k8s.ApiClient) -> None:
    install_crd(api_client)
    install_crd(api_client, SCHEDULE_CRD)


def labelled_group_claims(
    kube: Kube, namespace: str, source_volume: Callable[..., Any], app: str
) -> tuple[Groups, str]:
    """Two Bound claims labelled ``app=<app>`` on Elastic SAN volumes; the groups and the group class."""
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete")
    groups.labelled_claims(source_volume, storage_class, 2, {"app": app})
    return groups, group_class


def group_schedule(schedules: Schedules, namespace: str, name: str, group_class: str, **spec: Any) -> str:
    """A mode Group schedule every 5 s over the claims labelled ``app=<name>``; returns its UID."""
    created = schedules.create(
        namespace,
        name,
        schedule="@every 5s",
        mode="Group",
        source={"selector": {"matchLabels": {"app": name}}},
        groupSnapshotClassName=group_class,
        jitterSeconds=0,
        startingDeadlineSeconds=30,
        **spec,
    )
    return str(created["metadata"]["uid"])


def group_members(kube: Kube, namespace: str) -> list[tuple[dict[str, Any], str]]:
    """Every member VolumeSnapshot of the namespace, with the name of its VolumeGroupSnapshot."""
    listed = kube.custom.list_namespaced_custom_object(
        "snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots"
    )["items"]
    return [
        (vs, ref["name"])
        for vs in listed
        for ref in vs["metadata"].get("ownerReferences") or []
        if ref["kind"] == "VolumeGroupSnapshot"
    ]


def test_group_schedule_runs_trims_and_makes_one_group_per_tick_across_a_restart(
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    api_client: k8s.ApiClient,
    source_volume: Callable[..., Any],
) -> None:
    groups, group_class = labelled_group_claims(kube, namespace, source_volume, "grouped")
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
        uid = group_schedule(schedules, namespace, "grouped", group_class, retention={"keepLast": KEEP_LAST})
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
    groups, group_class = labelled_group_claims(kube, namespace, source_volume, "held")
    schedules = Schedules(api_client)
    operator = start_operator(**OPERATOR_ENV)
    try:
        uid = group_schedule(schedules, namespace, "held", group_class, retention={"keepLast": 1})
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
        blocked = schedules.wait_condition_true(namespace, "held", "RetentionBlocked")
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


def test_group_schedule_exports_each_member_and_trims_by_the_export_retention(
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    kube: Kube,
    namespace: str,
    api_client: k8s.ApiClient,
    source_volume: Callable[..., Any],
) -> None:
    groups, group_class = labelled_group_claims(kube, namespace, source_volume, "exported")
    schedules, exports = Schedules(api_client), Exports(api_client)
    operator = start_operator(**OPERATOR_ENV)
    try:
        uid = group_schedule(
            schedules,
            namespace,
            "exported",
            group_class,
            retention={"keepLast": 3},
            export={"everyNthRun": 2, "retention": {"keepLast": 1}},
        )

        members: dict[str, tuple[str, str]] = {}  # every member VolumeSnapshot seen: name -> (claim, group)

        def succeeded() -> dict[str, list[dict[str, Any]]]:
            """Succeeded exports of the schedule, per claim (and the members seen so far)."""
            for vs, group in group_members(kube, namespace):
                members[vs["metadata"]["name"]] = (vs["spec"]["source"]["persistentVolumeClaimName"], group)
            found: dict[str, list[dict[str, Any]]] = {}
            for export in exports.list(namespace, f"{LABEL_UID}={uid}"):
                if (export.get("status") or {}).get("phase") == "Succeeded":
                    found.setdefault(export["metadata"]["annotations"][ANN_CLAIM], []).append(export)
            return found

        first = wait_for(
            "an export of each member to succeed",
            lambda: (found := succeeded()) and set(found) == {"member-0", "member-1"} and found,
            timeout=120,
        )
        first_exports = {claim: found[0] for claim, found in first.items()}
        for claim, export in first_exports.items():
            # The source is the claim's member snapshot of one of the schedule's groups (named by it).
            source = export["spec"]["source"]["volumeSnapshotName"]
            assert source in members, (source, members)
            assert members[source][0] == claim
            assert members[source][1].startswith("exported-group-")
            assert export["spec"]["deletionPolicy"] == "Delete"
            assert disk_snapshot(emulator, export["status"]["diskSnapshotId"]) is not None
        wait_for(
            "the first exports and their managed-disk snapshots to be trimmed",
            lambda: all(
                exports.get(namespace, e["metadata"]["name"]) is None
                and disk_snapshot(emulator, e["status"]["diskSnapshotId"]) is None
                for e in first_exports.values()
            ),
            timeout=120,
        )
        # keepLast 1 per claim: once trimmed, each member claim has exactly one newer export.
        newer = wait_for(
            "one newer export per claim",
            lambda: (
                (found := succeeded())
                and set(found) == set(first_exports)
                and all(len(items) == 1 for items in found.values())
                and found
            ),
            timeout=60,
        )
        for claim, [export] in newer.items():
            assert export["metadata"]["name"] != first_exports[claim]["metadata"]["name"]
        schedules.patch(namespace, "exported", {"suspend": True})

        def orphans() -> set[str]:
            """Member snapshots whose group is gone (an export's hold on them must not outlive it)."""
            live = {g["metadata"]["name"] for g in schedule_groups(groups, uid)}
            return {
                vs["metadata"]["name"] for vs, group in group_members(kube, namespace) if group not in live
            }

        wait_for("the trimmed groups' members to be deleted with them", lambda: not orphans(), timeout=60)
        status = schedules.status(namespace, "exported")
        assert status.get("lastExportTime")
        assert {t["claim"]: t["exports"] >= 1 for t in status["targets"]} == {
            "member-0": True,
            "member-1": True,
        }
    finally:
        operator.stop()
