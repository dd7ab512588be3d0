"""Groups under trouble: a crash mid-cut, a member at its cap, a member that fails for good.

Each test runs its own operator (and stops it), so a crash can be staged; the emulator lets a
test make 200 snapshots of one volume quickly (its own per-volume pace is lifted here; the
operator's budget check is not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from group_scenario import BEING_CREATED, Groups, group_snapshots
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    StartOperator,
    snapshots_of,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

EMULATOR_ARGS = ("--snapshot-rate-limit", "1000")


@pytest.fixture
def own_operator(start_operator: StartOperator, emulator: EmulatorProcess) -> Iterator[OperatorProcess]:
    process = start_operator()
    try:
        yield process
    finally:
        process.stop()
        emulator.admin.clear_faults()


def handle_of(groups: Groups, name: str) -> str:
    """The group handle follows from the group content's UID alone."""
    uid = groups.content_of(name)["metadata"]["uid"]
    return "group-" + hashlib.sha256(uid.encode()).hexdigest()[:24]


def group_setup(
    kube: Kube, namespace: str, source_volume: Callable[..., Any], count: int
) -> tuple[Groups, str, list[Any]]:
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete")
    volumes = [v for _, v in groups.labelled_claims(source_volume, storage_class, count, {"app": "db"})]
    return groups, group_class, volumes


def test_operator_killed_after_some_members_were_cut_adopts_them(
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    first = start_operator()
    groups, group_class, volumes = group_setup(kube, namespace, source_volume, 3)
    # The first member PUT is answered 503 with a long Retry-After: the SDK waits, the others are cut.
    emulator.admin.set_faults(
        rules=[
            {
                "method": "put",
                "kind": "volumeSnapshots",
                "action": "503",
                "probability": 1.0,
                "count": 1,
                "retry_after": 120,
            }
        ]
    )
    emulator.admin.reset_counters()
    groups.create("db", group_class, {"app": "db"})

    def two_cut() -> list[Any] | None:
        found = [s for v in volumes for s in snapshots_of(esan, v.name) if s.name.startswith("group-")]
        return found if len(found) == 2 else None

    cut_before = wait_for("two of three members to be cut", two_cut, 90, interval=0.1)
    content = groups.content_of("db")
    assert BEING_CREATED in (content["metadata"].get("annotations") or {})
    first.kill()
    emulator.admin.clear_faults()

    second = start_operator()
    try:
        groups.wait_ready("db")
        handle = handle_of(groups, "db")
        after = group_snapshots(esan, f"{handle}-")
        assert len(after) == 3
        # The two cut before the crash were adopted by name, not cut again.
        assert {(s.name, s.system_data.created_at) for s in cut_before} <= {
            (s.name, s.system_data.created_at) for s in after
        }
        for volume in volumes:
            assert len(snapshots_of(esan, volume.name)) == 1
        puts = emulator.admin.count(method="PUT", kind="volumeSnapshots")
        assert puts - emulator.admin.count(method="PUT", kind="volumeSnapshots", status=503) == 3
        assert BEING_CREATED not in (groups.content_of("db")["metadata"].get("annotations") or {})
        assert len(groups.members("db")) == 3
        # Policy Delete: the adopted group goes with its members, leaving the shared emulator clean.
        groups.delete("db")
        wait_for("the member snapshots to be deleted", lambda: not group_snapshots(esan, f"{handle}-"), 90)
    finally:
        second.stop()


def test_member_at_its_cap_refuses_the_group_before_any_put(
    own_operator: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, group_class, volumes = group_setup(kube, namespace, source_volume, 2)
    full = volumes[1]

    def snapshot(i: int) -> None:
        esan.volume_snapshots.begin_create(
            RESOURCE_GROUP,
            SAN,
            VOLUME_GROUP,
            f"old-{full.name}-{i}",
            {"properties": {"creationData": {"sourceId": full.id}}},
        ).result()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(snapshot, range(200)))
    emulator.admin.reset_counters()

    groups.create("db", group_class, {"app": "db"})
    message = groups.wait_error("db", "limit of 200 snapshots")
    assert full.id in message
    assert volumes[0].id not in message
    assert "nothing was cut" in message
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 0
    assert snapshots_of(esan, volumes[0].name) == []
    assert len(snapshots_of(esan, full.name)) == 200
    assert group_snapshots(esan, f"{handle_of(groups, 'db')}-") == []
    refused = kube.wait_event(namespace, "db", "GroupBudgetExceeded")
    assert full.id in refused.message
    groups.delete("db")


def test_member_failing_for_good_mid_group_fails_it_and_leaves_no_member_behind(
    own_operator: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups, group_class, volumes = group_setup(kube, namespace, source_volume, 3)
    # One member's snapshot is accepted and then fails in Azure; the other two succeed.
    emulator.admin.set_faults("put:volumeSnapshots:lro-fail:1.0:1")
    groups.create("db", group_class, {"app": "db"})

    message = groups.wait_error("db", "failed for good")
    assert "no partial group is left" in message
    kube.wait_event(namespace, "db", "GroupMemberFailed")
    wait_for(
        "every member snapshot to be deleted again",
        lambda: all(snapshots_of(esan, v.name) == [] for v in volumes),
        90,
    )

    def cleaned_up() -> dict[str, Any] | None:
        found = groups.content_of("db")
        return found if BEING_CREATED not in (found["metadata"].get("annotations") or {}) else None

    content = wait_for("the clean-up to finish", cleaned_up, 60)
    assert "volumeGroupSnapshotHandle" not in content["status"]
    assert groups.members("db") == []
    groups.delete("db")
    wait_for("the failed group to go", lambda: groups.get("db") is None, 60)
