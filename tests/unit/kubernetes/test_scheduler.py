"""The schedule reconciler against a small stateful stand-in for the API server, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.kubernetes.api import KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Requeue
from kube_stand_in import FakeApi

pytestmark = pytest.mark.unit

UID = "0b1c2d3e-0000-4000-8000-000000000001"
START = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def schedule(**spec: Any) -> dict[str, Any]:
    base = {
        "schedule": "@every 1m",
        "source": {"claimNames": ["data"]},
        "retention": {"keepLast": 2},
        "jitterSeconds": 0,
    }
    base.update(spec)
    return {
        "apiVersion": "elasticsan.snapshotter.dev/v1alpha1",
        "kind": "ElasticSanSnapshotSchedule",
        "metadata": {
            "name": "every-minute",
            "namespace": "ns",
            "uid": UID,
            "generation": 1,
            "creationTimestamp": "2026-06-01T11:59:30Z",
        },
        "spec": base,
    }


class Harness:
    def __init__(self, body: dict[str, Any]) -> None:
        self.api = FakeApi()
        self.clock = Clock()
        self.azure = InMemoryAzure()
        kube = cast(KubeApi, self.api)
        self.schedules = Store()
        self.exports = Store()
        self.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")] = body
        self.schedules.apply("ADDED", body)
        self.rec = ScheduleReconciler(
            driver_name="elasticsan.snapshotter.dev",
            subscription="sub",
            api=kube,
            azure=self.azure,
            recorder=EventRecorder(kube),
            schedules=self.schedules,
            exports=self.exports,
            volumes=PersistentVolumes(kube),
            index=SanIndex(self.azure, []),
            minimum_interval=timedelta(minutes=1),
            clock=self.clock,
        )
        claim = {
            "metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
            "spec": {},
            "status": {"phase": "Bound"},
        }
        self.rec.claim_event("ADDED", claim)

    async def reconcile(self) -> Requeue | None:
        return await self.rec.reconcile("ns/every-minute")

    def status(self) -> dict[str, Any]:
        return self.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")].get("status") or {}

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)

    def mark(self, ready: bool = True, error: str | None = None) -> None:
        """The snapshot-controller's part: every snapshot of ours becomes ready (or fails)."""
        for vs in self.api.snapshots():
            if not (vs.get("status") or {}).get("readyToUse") and not (vs.get("status") or {}).get("error"):
                vs["status"] = (
                    {"readyToUse": True} if ready else {"readyToUse": False, "error": {"message": error}}
                )
            self.rec.snapshot_event("MODIFIED", vs)


async def test_a_tick_creates_one_snapshot_even_when_reconciled_again() -> None:
    h = Harness(schedule())
    outcome = await h.reconcile()
    assert [p for p, _ in h.api.created if p == "volumesnapshots"] == ["volumesnapshots"]
    assert outcome is not None
    assert outcome.after is not None
    assert 0 < outcome.after <= 60
    assert h.status()["lastScheduleTime"] == "2026-06-01T12:00:00Z"
    assert h.status()["nextScheduleTime"] == "2026-06-01T12:01:00Z"
    # A restarted operator: an empty snapshot store, the same tick.
    h.rec.snapshots = Store(h.rec.snapshots._slim)
    h.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")]["status"] = {}
    await h.reconcile()
    assert len(h.api.snapshots()) == 1


async def test_retention_keeps_the_newest_and_counts_only_ready() -> None:
    h = Harness(schedule())
    for minute in range(5):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()
        h.mark()
    await h.reconcile()
    names = sorted(vs["metadata"]["name"] for vs in h.api.snapshots())
    assert len(names) == 2
    assert names[-1].endswith(h.status()["targets"][0]["newestReady"][-24:])
    assert h.condition("Ready")["status"] == "True"


async def test_failed_runs_never_evict_good_ones_and_degrade() -> None:
    h = Harness(schedule(retention={"keepLast": 1}))
    await h.reconcile()
    h.mark()
    good = h.api.snapshots()[0]["metadata"]["name"]
    for minute in range(1, 4):
        h.clock.now = START + timedelta(minutes=minute)
        await h.reconcile()
        h.mark(ready=False, error="Azure said no")
    await h.reconcile()
    names = {vs["metadata"]["name"] for vs in h.api.snapshots()}
    assert good in names
    assert len(names) == 2  # the good one and the newest failed one (keepFailed 1)
    assert h.condition("Degraded")["status"] == "True"
    assert "Azure said no" in h.status()["targets"][0]["message"]


async def test_downtime_past_the_deadline_skips_and_records() -> None:
    h = Harness(schedule(startingDeadlineSeconds=10))
    await h.reconcile()
    h.mark()
    h.clock.now = START + timedelta(minutes=5, seconds=30)
    await h.reconcile()
    assert len(h.api.snapshots()) == 1
    skipped = h.status()["lastSkipped"]
    assert skipped["reason"] == "MissedStartingDeadline"
    assert h.status()["lastScheduleTime"] == "2026-06-01T12:05:00Z"


async def test_in_use_snapshots_are_kept_and_reported() -> None:
    h = Harness(schedule(retention={"keepLast": 1}))
    await h.reconcile()
    h.mark()
    first = h.api.snapshots()[0]["metadata"]["name"]
    restore = {
        "metadata": {"name": "restore", "namespace": "ns", "uid": "c2"},
        "spec": {
            "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": first}
        },
        "status": {"phase": "Pending"},
    }
    h.rec.claim_event("ADDED", restore)
    for minute in (1, 2):
        h.clock.now = START + timedelta(minutes=minute)
        await h.reconcile()
        h.mark()
    await h.reconcile()
    names = {vs["metadata"]["name"] for vs in h.api.snapshots()}
    assert first in names
    assert len(names) == 2
    assert h.condition("RetentionBlocked")["status"] == "True"
    assert first in h.condition("RetentionBlocked")["message"]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"schedule": "61 * * * *"}, "InvalidSpec"),
        ({"schedule": "@every 1s"}, "InvalidSpec"),
        ({"timeZone": "Mars/Olympus"}, "InvalidSpec"),
        ({"mode": "Group"}, "InvalidSpec"),
        ({"retention": {"keepLast": 199}}, "LimitExceeded"),
    ],
)
async def test_refused_specs_create_nothing(spec: dict[str, Any], reason: str) -> None:
    h = Harness(schedule(**spec))
    assert await h.reconcile() is None
    assert h.api.snapshots() == []
    assert h.condition("Ready")["reason"] == reason
    assert h.condition("Ready")["status"] == "False"


async def test_suspended_schedules_do_nothing() -> None:
    h = Harness(schedule(suspend=True))
    await h.reconcile()
    h.clock.now = START + timedelta(minutes=3)
    await h.reconcile()
    assert h.api.snapshots() == []
    assert h.condition("Progressing")["reason"] == "Suspended"


async def test_two_schedules_on_one_claim_report_pressure() -> None:
    h = Harness(schedule(schedule="@every 1m"))
    other = schedule(schedule="@every 1m")
    other["metadata"] = {**other["metadata"], "name": "other", "uid": "other-uid"}
    h.schedules.apply("ADDED", other)
    await h.reconcile()
    pressure = h.condition("LimitPressure")
    assert pressure["status"] == "True"
    assert "take up to 10 snapshots in 5m (limit 7)" in pressure["message"]
    assert len(h.api.snapshots()) == 1  # paced, not failed: the run still happens


async def test_delete_policy_deletes_what_the_schedule_made() -> None:
    h = Harness(schedule(deletionPolicy="Delete"))
    await h.reconcile()
    stored = h.api.objects[("elasticsansnapshotschedules", "ns", "every-minute")]
    assert "elasticsan.snapshotter.dev/schedule-protection" in stored["metadata"]["finalizers"]
    stored["metadata"]["deletionTimestamp"] = "2026-06-01T12:00:05Z"
    h.schedules.apply("MODIFIED", stored)
    await h.reconcile()
    assert h.api.snapshots() == []
    assert stored["metadata"]["finalizers"] == []


async def test_every_nth_run_is_exported_and_old_exports_trimmed() -> None:
    h = Harness(schedule(retention={"keepLast": 5}, export={"everyNthRun": 2, "retention": {"keepLast": 1}}))
    for minute in range(5):
        h.clock.now = START + timedelta(minutes=minute)
        await h.reconcile()
        h.mark()
        await h.reconcile()
        for (plural, _, _), export in list(h.api.objects.items()):
            if plural == "elasticsansnapshotexports":
                export["status"] = {"phase": "Succeeded"}
                h.exports.apply("MODIFIED", export)
    await h.reconcile()
    made = [name for plural, name in h.api.created if plural == "elasticsansnapshotexports"]
    assert [name.split("-")[4] for name in made] == ["120000", "120200", "120400"]
    left = [name for (plural, _, name) in h.api.objects if plural == "elasticsansnapshotexports"]
    assert left == [made[-1]]
    export = h.api.objects[("elasticsansnapshotexports", "ns", made[-1])]
    assert export["spec"]["deletionPolicy"] == "Delete"
    assert export["spec"]["source"] == {"volumeSnapshotName": made[-1]}
    assert h.status()["targets"][0]["exports"] == 1
    assert h.status()["lastExportTime"] == "2026-06-01T12:04:00Z"


def test_label_selectors() -> None:
    from elasticsan_snapshotter.kubernetes.schedule_spec import selects

    labels = {"app": "db", "tier": "gold"}
    assert selects({"matchLabels": {"app": "db"}}, labels)
    assert not selects({"matchLabels": {"app": "web"}}, labels)
    assert selects(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}, labels
    )
    assert not selects(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, labels
    )
    assert selects({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    assert selects({}, labels)


async def test_a_snapshot_labelled_keep_is_never_trimmed() -> None:
    h = Harness(schedule(retention={"keepLast": 1}))
    await h.reconcile()
    h.mark()
    first = h.api.snapshots()[0]
    first["metadata"]["labels"]["elasticsan.snapshotter.dev/keep"] = "true"
    h.rec.snapshot_event("MODIFIED", first)
    for minute in (1, 2, 3):
        h.clock.now = START + timedelta(minutes=minute)
        await h.reconcile()
        h.mark()
    await h.reconcile()
    names = {vs["metadata"]["name"] for vs in h.api.snapshots()}
    assert first["metadata"]["name"] in names
    assert len(names) == 2
    assert "labelled keep" in h.condition("RetentionBlocked")["message"]


def succeed_exports(h: Harness) -> list[str]:
    """The exporter's part: every export of ours succeeds; their names."""
    names = []
    for (plural, _, name), export in list(h.api.objects.items()):
        if plural == "elasticsansnapshotexports":
            export["status"] = {"phase": "Succeeded"}
            h.exports.apply("MODIFIED", export)
            names.append(name)
    return names


async def test_an_export_schedule_exports_the_run_of_its_tick_once_per_tick() -> None:
    h = Harness(
        schedule(retention={"keepLast": 5}, export={"schedule": "@every 2m", "retention": {"keepLast": 2}})
    )
    for minute in range(6):
        h.clock.now = START + timedelta(minutes=minute, seconds=1)
        await h.reconcile()  # the run of this minute is still being made
        h.mark()
        await h.reconcile()
        succeed_exports(h)
    await h.reconcile()
    made = [name for plural, name in h.api.created if plural == "elasticsansnapshotexports"]
    # Export ticks 12:00, 12:02, 12:04: each exports the run of its own tick, not the one before.
    assert [name.split("-")[4] for name in made] == ["120000", "120200", "120400"]
    left = sorted(name for (plural, _, name) in h.api.objects if plural == "elasticsansnapshotexports")
    assert left == sorted(made[1:])
    export = h.api.objects[("elasticsansnapshotexports", "ns", made[-1])]
    assert (
        export["metadata"]["annotations"]["elasticsan.snapshotter.dev/export-time"] == "2026-06-01T12:04:00Z"
    )
    assert h.status()["lastExportTime"] == "2026-06-01T12:04:00Z"
