"""Mode Group of the schedule reconciler: one VolumeGroupSnapshot per tick, retention on groups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_scheduler import START, UID, Harness, schedule

from elasticsan_snapshotter.kubernetes.stores import Store

pytestmark = pytest.mark.unit

SELECTOR = {"matchLabels": {"app": "db"}}


def group_schedule(**spec: Any) -> dict[str, Any]:
    return schedule(
        mode="Group",
        source={"selector": SELECTOR},
        groupSnapshotClassName="group-class",
        **spec,
    )


def harness(**spec: Any) -> Harness:
    h = Harness(group_schedule(**spec))
    for name in ("db-0", "db-1"):
        h.rec.claim_event(
            "ADDED",
            {
                "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "labels": {"app": "db"}},
                "spec": {},
                "status": {"phase": "Bound"},
            },
        )
    return h


def groups(h: Harness) -> list[dict[str, Any]]:
    return [o for (plural, _, _), o in h.api.objects.items() if plural == "volumegroupsnapshots"]


def mark_groups(h: Harness, ready: bool = True, only: str | None = None) -> None:
    """The snapshot-controller's part: groups of ours (or just ``only``) become ready (or fail).

    A group that becomes ready gets a ready member VolumeSnapshot per claim, owned by the group.
    """
    for group in groups(h):
        if only not in (None, group["metadata"]["name"]):
            continue
        if not (group.get("status") or {}).get("readyToUse"):
            group["status"] = {"readyToUse": True} if ready else {"error": {"message": "cut failed"}}
            if ready:
                for claim in ("db-0", "db-1"):
                    add_member(h, group, claim)
        h.rec.group_event("MODIFIED", group)


def add_member(h: Harness, group: dict[str, Any], claim: str) -> dict[str, Any]:
    meta = group["metadata"]
    name = f"snapshot-{meta['uid']}-{claim}"
    vs = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {},
            "ownerReferences": [{"kind": "VolumeGroupSnapshot", "name": meta["name"], "uid": meta["uid"]}],
        },
        "spec": {"source": {"persistentVolumeClaimName": claim}},
        "status": {"readyToUse": True, "volumeGroupSnapshotName": meta["name"]},
    }
    h.api.objects[("volumesnapshots", "ns", name)] = vs
    assert h.rec.snapshot_event("ADDED", vs) == "ns/every-minute"
    return vs


def member_of(h: Harness, group: str, claim: str) -> str:
    [name] = [
        vs["metadata"]["name"]
        for vs in h.api.snapshots()
        if vs["metadata"]["ownerReferences"][0]["name"] == group
        and vs["spec"]["source"]["persistentVolumeClaimName"] == claim
    ]
    return name


def restore_from(name: str) -> dict[str, Any]:
    """A claim, not Bound yet, whose dataSource is the VolumeSnapshot ``name``."""
    return {
        "metadata": {"name": "restore", "namespace": "ns", "uid": "u-restore"},
        "spec": {
            "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name}
        },
        "status": {"phase": "Pending"},
    }


def export_of(name: str, phase: str = "Running") -> dict[str, Any]:
    """An export (made by hand) reading the VolumeSnapshot ``name``."""
    return {
        "metadata": {"name": f"by-hand-{name}"[:60], "namespace": "ns", "uid": "u-export"},
        "spec": {"source": {"volumeSnapshotName": name}},
        "status": {"phase": phase},
    }


async def test_a_tick_creates_one_group_over_the_selector_even_after_a_restart() -> None:
    h = harness()
    await h.reconcile()
    [group] = groups(h)
    assert h.api.snapshots() == []
    assert group["spec"] == {
        "source": {"selector": SELECTOR},
        "volumeGroupSnapshotClassName": "group-class",
    }
    assert group["metadata"]["labels"]["elasticsan.snapshotter.dev/schedule-uid"] == UID
    assert group["metadata"]["annotations"]["elasticsan.snapshotter.dev/scheduled-time"] == (
        "2026-06-01T12:00:00Z"
    )
    # A restarted operator: no groups remembered, no status, the same tick: the same name again.
    h.rec.groups = Store(h.rec.groups._slim)
    h.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")]["status"] = {}
    await h.reconcile()
    assert [g["metadata"]["name"] for g in groups(h)] == [group["metadata"]["name"]]


async def test_retention_trims_groups_to_keep_last_and_counts_only_ready() -> None:
    h = harness()
    names = []
    for minute in range(4):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()
        names.append(max(g["metadata"]["name"] for g in groups(h)))
        if minute != 2:
            mark_groups(h, only=names[-1])
    # Tick 2 is still being made; ready ticks 0, 1, 3: keepLast 2 deletes tick 0's group only.
    h.clock.now = START + timedelta(minutes=3, seconds=2)
    await h.reconcile()
    left = sorted(g["metadata"]["name"] for g in groups(h))
    assert left == sorted(names[1:])
    assert h.api.deleted == [("volumegroupsnapshots", names[0])]
    targets = {t["claim"]: t for t in h.status()["targets"]}
    assert set(targets) == {"db-0", "db-1"}
    assert targets["db-0"]["readyCount"] == 2


async def test_failed_groups_never_evict_the_newest_ready_one() -> None:
    h = harness(retention={"keepLast": 1, "keepFailed": 1})
    await h.reconcile()
    mark_groups(h)
    good = groups(h)[0]["metadata"]["name"]
    for minute in (1, 2):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()
        mark_groups(h, ready=False)
    await h.reconcile()
    left = {g["metadata"]["name"] for g in groups(h)}
    assert good in left
    assert len(left) == 2  # the ready one and the newest failed one
    assert h.condition("Degraded")["status"] == "True"


async def test_claim_names_with_mode_group_are_refused_and_nothing_is_made() -> None:
    h = Harness(schedule(mode="Group"))
    assert await h.reconcile() is None
    assert groups(h) == []
    assert h.api.snapshots() == []
    ready = h.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "selector" in ready["message"]


async def test_a_run_with_an_unbound_member_is_skipped_and_recorded() -> None:
    h = harness()
    h.rec.claim_event(
        "ADDED",
        {
            "metadata": {"name": "db-2", "namespace": "ns", "uid": "u2", "labels": {"app": "db"}},
            "spec": {},
            "status": {"phase": "Pending"},
        },
    )
    await h.reconcile()
    assert groups(h) == []
    assert h.status()["lastSkipped"]["reason"] == "ClaimNotBound"
    assert "db-2" in h.status()["lastSkipped"]["message"]


@pytest.mark.parametrize(
    ("hold", "why"),
    [
        ("restore", "the dataSource of a claim that is not Bound yet"),
        ("export", "the source of an export that has not finished"),
    ],
)
async def test_a_group_whose_member_is_in_use_is_kept_and_reported(hold: str, why: str) -> None:
    h = harness(retention={"keepLast": 1})
    await h.reconcile()
    mark_groups(h)
    [first] = [g["metadata"]["name"] for g in groups(h)]
    member = member_of(h, first, "db-1")
    if hold == "restore":
        h.rec.claim_event("ADDED", restore_from(member))
    else:
        h.exports.apply("ADDED", export_of(member))
    for minute in (1, 2):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()
        mark_groups(h)
    await h.reconcile()
    left = sorted(g["metadata"]["name"] for g in groups(h))
    # keepLast 1 keeps tick 2's group; tick 1's goes; tick 0's stays because its member is held.
    assert len(left) == 2
    assert first in left
    blocked = h.condition("RetentionBlocked")
    assert blocked["status"] == "True"
    assert f"{first} (member {member} is {why})" in blocked["message"]
    # Released: the next pass trims the group.
    if hold == "restore":
        h.rec.claim_event("DELETED", restore_from(member))
    else:
        h.exports.apply("MODIFIED", export_of(member, phase="Succeeded"))
    await h.reconcile()
    assert first not in {g["metadata"]["name"] for g in groups(h)}
    assert h.condition("RetentionBlocked")["status"] == "False"


def exports(h: Harness) -> dict[str, dict[str, Any]]:
    return {
        name: o for (plural, _, name), o in h.api.objects.items() if plural == "elasticsansnapshotexports"
    }


async def test_every_nth_group_run_exports_each_member_and_trims_per_claim() -> None:
    h = harness(retention={"keepLast": 5}, export={"everyNthRun": 2, "retention": {"keepLast": 1}})
    seen: dict[str, dict[str, Any]] = {}
    for minute in range(5):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()
        mark_groups(h)
        await h.reconcile()
        for name, export in exports(h).items():
            export["status"] = {"phase": "Succeeded"}
            h.exports.apply("MODIFIED", export)
            seen[name] = export
    await h.reconcile()
    made = list(seen.values())
    # Ticks 0, 2 and 4: one export per member of that tick's group.
    ticks = sorted({e["metadata"]["annotations"]["elasticsan.snapshotter.dev/scheduled-time"] for e in made})
    assert ticks == ["2026-06-01T12:00:00Z", "2026-06-01T12:02:00Z", "2026-06-01T12:04:00Z"]
    assert len(made) == 6
    by_group = {
        g["metadata"]["annotations"]["elasticsan.snapshotter.dev/scheduled-time"]: g for g in groups(h)
    }
    newest = by_group["2026-06-01T12:04:00Z"]["metadata"]["name"]
    left = exports(h)
    assert sorted(left) == sorted(member_of(h, newest, claim) for claim in ("db-0", "db-1"))
    for name, export in left.items():
        assert export["spec"]["source"] == {"volumeSnapshotName": name}
        assert export["spec"]["deletionPolicy"] == "Delete"
        assert export["metadata"]["labels"]["elasticsan.snapshotter.dev/schedule-uid"] == UID
    claims = {e["metadata"]["annotations"]["elasticsan.snapshotter.dev/claim"] for e in left.values()}
    assert claims == {"db-0", "db-1"}
    assert all(t["exports"] == 1 for t in h.status()["targets"])
    assert h.status()["lastExportTime"] == "2026-06-01T12:04:00Z"


async def test_a_group_not_ready_yet_is_not_exported() -> None:
    h = harness(export={"everyNthRun": 1, "retention": {"keepLast": 1}})
    await h.reconcile()
    [group] = groups(h)
    for claim in ("db-0", "db-1"):
        add_member(h, group, claim)  # members ready, the group itself not yet
    await h.reconcile()
    assert exports(h) == {}
    mark_groups(h)
    await h.reconcile()
    assert len(exports(h)) == 2


@pytest.mark.parametrize(("keep_last", "refused"), [(177, False), (178, True)])
async def test_group_exports_count_in_the_limits(keep_last: int, refused: bool) -> None:
    # keepLast + keepFailed 1 + one run in flight + one source held by a running export, against 180.
    h = harness(retention={"keepLast": keep_last}, export={"everyNthRun": 1, "retention": {"keepLast": 1}})
    await h.reconcile()
    ready = h.condition("Ready")
    if refused:
        assert (ready["reason"], groups(h)) == ("LimitExceeded", [])
        assert f"holds up to {keep_last + 3} snapshots per volume" in ready["message"]
    else:
        assert ready["reason"] != "LimitExceeded"
        assert len(groups(h)) == 1


async def test_an_export_schedule_in_mode_group_exports_the_members_of_its_ticks_group() -> None:
    h = harness(retention={"keepLast": 5}, export={"schedule": "@every 2m", "retention": {"keepLast": 1}})
    for minute in range(4):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()  # this minute's group is still being made
        mark_groups(h)
        await h.reconcile()
        for export in exports(h).values():
            export["status"] = {"phase": "Succeeded"}
            h.exports.apply("MODIFIED", export)
    await h.reconcile()
    by_tick = {
        g["metadata"]["annotations"]["elasticsan.snapshotter.dev/scheduled-time"]: g for g in groups(h)
    }
    group_of_tick_2 = by_tick["2026-06-01T12:02:00Z"]["metadata"]["name"]
    assert sorted(exports(h)) == sorted(member_of(h, group_of_tick_2, claim) for claim in ("db-0", "db-1"))
    made = [name for plural, name in h.api.created if plural == "elasticsansnapshotexports"]
    assert len(made) == 4  # ticks 12:00 and 12:02, one export per member claim each


async def test_delete_policy_deletes_the_groups_and_their_exports() -> None:
    h = harness(deletionPolicy="Delete", export={"everyNthRun": 1, "retention": {"keepLast": 1}})
    await h.reconcile()
    mark_groups(h)
    await h.reconcile()
    assert len(groups(h)) == 1
    assert len(exports(h)) == 2
    stored = h.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")]
    stored["metadata"]["deletionTimestamp"] = "2026-06-01T12:00:05Z"
    h.schedules.apply("MODIFIED", stored)
    await h.reconcile()
    assert (groups(h), exports(h)) == ([], {})
    assert stored["metadata"]["finalizers"] == []
