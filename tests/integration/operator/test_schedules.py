"""ElasticSanSnapshotSchedule end to end: the CRD in the real API server, the operator, the emulator.

Schedules use ``@every`` intervals of seconds: the operator runs with a lowered minimum
interval and, like the emulator, a 30-second snapshot window, so the limits still apply.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from export_scenario import Exports, disk_snapshot, install_crd
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from operator_scenario import VOLUME_GROUP, Kube, StartOperator, snapshots_of, unique_name
from schedule_scenario import (
    MINIMUM_INTERVAL,
    SCHEDULE_CRD,
    WINDOW,
    Schedules,
    parse_time,
    ticks_of,
)

from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EMULATOR_ARGS = ("--snapshot-rate-window", WINDOW)
OPERATOR_ENV = {"ESS_SCHEDULE_MINIMUM_INTERVAL": MINIMUM_INTERVAL, "ESS_SNAPSHOT_WINDOW": WINDOW}


@pytest.fixture(scope="module")
def crds(api_client: k8s.ApiClient) -> None:
    install_crd(api_client)
    install_crd(api_client, SCHEDULE_CRD)


@pytest.fixture
def scheduler(crds: None, start_operator: StartOperator) -> Iterator[OperatorProcess]:
    """An operator for this test alone (tests stop and restart it)."""
    process = start_operator(**OPERATOR_ENV)
    yield process
    process.stop()


@pytest.fixture
def schedules(api_client: k8s.ApiClient) -> Schedules:
    return Schedules(api_client)


@pytest.fixture
def claim(kube: Kube, namespace: str, san_id: str) -> dict[str, str]:
    """A provisioned claim ``data`` and a snapshot class; returns their names and the Azure volume."""
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class, elasticSanId=san_id, volumeGroup=VOLUME_GROUP)
    kube.create_snapshot_class(snapshot_class)
    kube.create_claim(namespace, "data", storage_class, "10Gi")
    pvc = kube.wait_claim_bound(namespace, "data")
    return {"snapshot_class": snapshot_class, "volume": f"pvc-{pvc.metadata.uid}"}


def every(seconds: int, snapshot_class: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schedule": f"@every {seconds}s",
        "source": {"claimNames": ["data"]},
        "snapshotClassName": snapshot_class,
        "jitterSeconds": 0,
        "retention": {"keepLast": 10},
    }
    base.update(spec)
    return base


def created_at(vs: dict[str, Any]) -> datetime:
    return parse_time(vs["metadata"]["creationTimestamp"])


def tick_of(vs: dict[str, Any]) -> datetime:
    return parse_time(ticks_of([vs])[0])


def test_runs_on_time_and_retention_keeps_the_snapshot_in_use(
    scheduler: OperatorProcess,
    schedules: Schedules,
    claim: dict[str, str],
    namespace: str,
    kube: Kube,
) -> None:
    spec = every(
        5, claim["snapshot_class"], jitterSeconds=2, startingDeadlineSeconds=20, retention={"keepLast": 2}
    )
    uid = schedules.create(namespace, "every5", **spec)["metadata"]["uid"]
    ready = wait_for("a ready scheduled snapshot", lambda: schedules.ready(namespace, uid), timeout=90)
    for vs in schedules.made(namespace, uid):
        late = (created_at(vs) - tick_of(vs)).total_seconds()
        assert -1 <= late <= 2 + 20, f"{vs['metadata']['name']} created {late:.0f}s after its tick"
    held_snapshot = min(ready, key=tick_of)
    held, held_tick = held_snapshot["metadata"]["name"], tick_of(held_snapshot)
    # A restore from the held snapshot on a class that does not exist: the claim stays Pending.
    kube.create_claim(namespace, "restore", "no-such-class", snapshot=held)

    def trimmed() -> list[dict[str, Any]] | None:
        others = [vs for vs in schedules.ready(namespace, uid) if vs["metadata"]["name"] != held]
        names = {vs["metadata"]["name"] for vs in schedules.made(namespace, uid)}
        # Three ticks past the held one: without the hold, it would have been trimmed by now.
        later = max((tick_of(vs) for vs in others), default=held_tick) - held_tick
        return others if held in names and later >= timedelta(seconds=15) and len(others) == 2 else None

    wait_for("retention to trim to keepLast 2 around the held snapshot", trimmed, timeout=120)
    blocked = schedules.wait_condition_true(namespace, "every5", "RetentionBlocked")
    assert held in blocked["message"]
    assert "not Bound" in blocked["message"]
    kube.core.delete_namespaced_persistent_volume_claim("restore", namespace)
    wait_for(
        "the released snapshot to be trimmed",
        lambda: held not in {vs["metadata"]["name"] for vs in schedules.made(namespace, uid)},
        timeout=60,
    )
    status = schedules.status(namespace, "every5")
    assert status["observedGeneration"] == 1
    assert parse_time(status["nextScheduleTime"]) > parse_time(status["lastScheduleTime"])
    assert status["targets"][0]["claim"] == "data"
    assert status["targets"][0]["azureSnapshotLimit"] == 200


def test_operator_killed_across_a_tick_makes_one_snapshot_per_tick(
    scheduler: OperatorProcess,
    start_operator: StartOperator,
    schedules: Schedules,
    claim: dict[str, str],
    namespace: str,
    esan: ElasticSanMgmtClient,
) -> None:
    uid = schedules.create(
        namespace, "kill", **every(5, claim["snapshot_class"], startingDeadlineSeconds=30)
    )["metadata"]["uid"]
    wait_for("the first scheduled snapshot", lambda: schedules.made(namespace, uid), timeout=90)
    scheduler.kill()  # SIGKILL right after a create: the status may not say the tick was handled
    again = start_operator(**OPERATOR_ENV)
    try:
        wait_for("four ready snapshots", lambda: len(schedules.ready(namespace, uid)) >= 4, timeout=120)
        schedules.patch(namespace, "kill", {"suspend": True})
        wait_for(
            "the schedule to be suspended",
            lambda: (
                (c := schedules.condition(namespace, "kill", "Progressing")) and c["reason"] == "Suspended"
            ),
            timeout=30,
        )
        wait_for(
            "every snapshot to be ready",
            lambda: all((vs.get("status") or {}).get("readyToUse") for vs in schedules.made(namespace, uid)),
            timeout=60,
        )
        made = schedules.made(namespace, uid)
        ticks = ticks_of(made)
        assert len(ticks) == len(set(ticks)), ticks
        # One Elastic SAN snapshot per VolumeSnapshot: no tick made a second one, even in Azure.
        assert len(snapshots_of(esan, claim["volume"])) == len(made)
    finally:
        again.stop()


def test_downtime_past_the_deadline_skips_instead_of_bunching(
    scheduler: OperatorProcess,
    start_operator: StartOperator,
    schedules: Schedules,
    claim: dict[str, str],
    namespace: str,
) -> None:
    uid = schedules.create(namespace, "down", **every(5, claim["snapshot_class"], startingDeadlineSeconds=2))[
        "metadata"
    ]["uid"]
    wait_for("the first scheduled snapshot", lambda: schedules.ready(namespace, uid), timeout=90)
    scheduler.stop()
    stopped = datetime.now(UTC)
    time.sleep(16)  # the downtime itself: three ticks pass with no operator
    restarted = datetime.now(UTC)
    again = start_operator(**OPERATOR_ENV)
    try:
        skipped = wait_for(
            "a recorded skip",
            lambda: (
                (s := schedules.status(namespace, "down").get("lastSkipped"))
                and parse_time(s["time"]) > stopped
                and s
            ),
            timeout=60,
        )
        assert skipped["reason"] in ("MissedTicks", "MissedStartingDeadline"), skipped
        wait_for(
            "a snapshot after the restart",
            lambda: any(tick_of(vs) > restarted for vs in schedules.ready(namespace, uid)),
            timeout=60,
        )
        downtime = [
            t
            for t in map(tick_of, schedules.made(namespace, uid))
            if stopped + timedelta(seconds=6) < t < restarted - timedelta(seconds=3)
        ]
        assert downtime == [], f"ticks missed during the downtime were run afterwards: {downtime}"
    finally:
        again.stop()


def test_scheduled_export_makes_disk_snapshots_and_trims_them(
    scheduler: OperatorProcess,
    schedules: Schedules,
    claim: dict[str, str],
    namespace: str,
    api_client: k8s.ApiClient,
    emulator: Any,
) -> None:
    spec = every(
        5,
        claim["snapshot_class"],
        retention={"keepLast": 3},
        export={"everyNthRun": 2, "retention": {"keepLast": 1}},
    )
    uid = schedules.create(namespace, "export", **spec)["metadata"]["uid"]
    exports = Exports(api_client)
    selector = f"elasticsan.snapshotter.dev/schedule-uid={uid}"

    def succeeded() -> list[dict[str, Any]]:
        return [
            e
            for e in exports.list(namespace, selector)
            if (e.get("status") or {}).get("phase") == "Succeeded"
        ]

    first = wait_for("a scheduled export to succeed", succeeded, timeout=120)[0]
    disk_id = first["status"]["diskSnapshotId"]
    assert disk_snapshot(emulator, disk_id) is not None
    wait_for(
        "the first export and its managed-disk snapshot to be trimmed",
        lambda: (
            exports.get(namespace, first["metadata"]["name"]) is None
            and disk_snapshot(emulator, disk_id) is None
        ),
        timeout=120,
    )
    # keepLast 1: once trimmed, exactly one export has succeeded, a newer one.
    wait_for(
        "one newer export left",
        lambda: (
            (found := succeeded())
            and len(found) == 1
            and found[0]["metadata"]["name"] != first["metadata"]["name"]
        ),
        timeout=60,
    )
    assert schedules.status(namespace, "export").get("lastExportTime")


def test_suspended_schedule_does_nothing_until_resumed(
    scheduler: OperatorProcess, schedules: Schedules, claim: dict[str, str], namespace: str
) -> None:
    uid = schedules.create(namespace, "paused", **every(5, claim["snapshot_class"], suspend=True))[
        "metadata"
    ]["uid"]
    first = wait_for(
        "the schedule to pass a tick",
        lambda: schedules.status(namespace, "paused").get("lastScheduleTime"),
        timeout=60,
    )
    wait_for(
        "the schedule to pass two more ticks",
        lambda: (
            (t := schedules.status(namespace, "paused").get("lastScheduleTime"))
            and parse_time(t) >= parse_time(first) + timedelta(seconds=10)
        ),
        timeout=60,
    )
    assert schedules.made(namespace, uid) == []
    assert (schedules.condition(namespace, "paused", "Progressing") or {}).get("reason") == "Suspended"
    schedules.patch(namespace, "paused", {"suspend": False})
    wait_for("a snapshot once resumed", lambda: schedules.made(namespace, uid), timeout=60)


def test_schedules_pushed_over_the_volume_rate_report_pressure_and_are_paced(
    scheduler: OperatorProcess, schedules: Schedules, claim: dict[str, str], namespace: str
) -> None:
    uids = [
        schedules.create(namespace, name, **every(5, claim["snapshot_class"], retention={"keepLast": 3}))[
            "metadata"
        ]["uid"]
        for name in ("first", "second")
    ]
    for name in ("first", "second"):
        pressure = wait_for(
            f"LimitPressure on {name}",
            lambda name=name: (
                (c := schedules.condition(namespace, name, "LimitPressure")) and c["status"] == "True" and c
            ),
            timeout=60,
        )
        assert "take up to 12 snapshots in 30s (limit 7)" in pressure["message"]
    wait_for(
        "ready snapshots of both, paced by the limiter",
        lambda: all(len(schedules.ready(namespace, uid)) >= 2 for uid in uids),
        timeout=120,
    )
    failed = [
        vs["metadata"]["name"]
        for uid in uids
        for vs in schedules.made(namespace, uid)
        if (vs.get("status") or {}).get("error")
    ]
    assert failed == []


def test_deletion_policy_decides_what_outlives_the_schedule(
    scheduler: OperatorProcess, schedules: Schedules, claim: dict[str, str], namespace: str
) -> None:
    kept = schedules.create(namespace, "kept", **every(5, claim["snapshot_class"]))["metadata"]["uid"]
    gone = schedules.create(namespace, "gone", **every(5, claim["snapshot_class"], deletionPolicy="Delete"))
    wait_for(
        "snapshots of both",
        lambda: schedules.ready(namespace, kept) and schedules.ready(namespace, gone["metadata"]["uid"]),
        timeout=90,
    )
    schedules.delete(namespace, "kept")
    schedules.delete(namespace, "gone")
    wait_for(
        "both schedules to be gone",
        lambda: schedules.get(namespace, "kept") is None and schedules.get(namespace, "gone") is None,
        timeout=60,
    )
    assert schedules.made(namespace, gone["metadata"]["uid"]) == []
    assert schedules.ready(namespace, kept)


@pytest.mark.parametrize(
    "spec",
    [
        {"schedule": "every hour"},
        {"schedule": "@every 1y"},
        {"timeZone": "not a zone"},
        {"retention": {"keepLast": -1}},
        {"retention": {"daily": -3}},
        {"retention": {"minKeepReady": 1}},
        {"source": {"claimNames": ["data"], "selector": {"matchLabels": {"a": "b"}}}},
        {"source": {}},
        {"export": {"everyNthRun": 2, "schedule": "@daily", "retention": {"keepLast": 1}}},
        {"startingDeadlineSeconds": 0},
        {"mode": "Group"},  # with claimNames: a VolumeGroupSnapshot selects by label only
        # Limits that can never fit, judged at admission: 179 + keepFailed 1 + 1 in flight > 180.
        {"retention": {"keepLast": 179}},
        {"retention": {"hourly": 100, "daily": 79}},
        {"retention": {"keepLast": 178}, "export": {"everyNthRun": 1, "retention": {"keepLast": 1}}},
        {"retention": {"maxAge": "1d", "minKeepReady": 179}},
    ],
)
def test_bad_input_is_refused_by_the_api_server(
    crds: None, schedules: Schedules, namespace: str, spec: dict[str, Any]
) -> None:
    body = every(60, "any-class", **spec)
    with pytest.raises(ApiException) as caught:
        schedules.create(namespace, "bad", **body)
    assert caught.value.status == 422, caught.value.body


@pytest.mark.parametrize(
    "spec",
    [
        {"retention": {"keepLast": 178}},
        {"retention": {"keepLast": 177}, "export": {"everyNthRun": 1, "retention": {"keepLast": 1}}},
        {"retention": {"keepLast": 200, "maxAge": "1h"}},  # maxAge caps it: the operator judges
    ],
)
def test_limits_at_admission_accept_what_fits(
    crds: None, schedules: Schedules, namespace: str, spec: dict[str, Any]
) -> None:
    schedules.create(namespace, "fits", **every(60, "any-class", **spec))
    schedules.delete(namespace, "fits")


STATUS_REFUSALS = [
    ({"schedule": "61 * * * *"}, "InvalidSpec", "not a valid cron expression"),
    ({"timeZone": "Mars/Olympus"}, "InvalidSpec", "not a known IANA time zone"),
    ({"schedule": "@every 1s"}, "InvalidSpec", "minimum interval of 5s"),
    # 20 minutes of 5-second ticks: only the operator can count what maxAge keeps (243 > 180).
    ({"retention": {"maxAge": "20m"}}, "LimitExceeded", "budget is 180"),
]


def test_bad_input_is_reported_in_status_and_nothing_is_made(
    scheduler: OperatorProcess, schedules: Schedules, claim: dict[str, str], namespace: str, kube: Kube
) -> None:
    made = {}
    for number, (spec, _, _) in enumerate(STATUS_REFUSALS):
        created = schedules.create(namespace, f"bad-{number}", **every(5, claim["snapshot_class"], **spec))
        made[f"bad-{number}"] = created["metadata"]["uid"]
    for number, (_, reason, words) in enumerate(STATUS_REFUSALS):
        name = f"bad-{number}"
        ready = wait_for(
            f"condition Ready {reason} on {name}",
            lambda name=name, reason=reason: (
                (c := schedules.condition(namespace, name, "Ready")) and c["reason"] == reason and c
            ),
            timeout=60,
        )
        assert ready["status"] == "False"
        assert words in ready["message"]
        kube.wait_event(namespace, name, reason)
    # A working schedule beside them runs: the refused ones had every chance to run too.
    good = schedules.create(namespace, "good", **every(5, claim["snapshot_class"]))["metadata"]["uid"]
    wait_for("the working schedule to run", lambda: schedules.made(namespace, good), timeout=60)
    for uid in made.values():
        assert schedules.made(namespace, uid) == []


def test_example_schedule_applied_as_written(
    scheduler: OperatorProcess,
    schedules: Schedules,
    claim: dict[str, str],
    namespace: str,
    api_client: k8s.ApiClient,
    artifacts: Artifacts,
    cluster: LocalCluster,
) -> None:
    k8s.CoreV1Api(api_client).patch_namespaced_persistent_volume_claim(
        "data", namespace, {"metadata": {"labels": {"backup.example.com/schedule": "hourly"}}}
    )
    kubectl = [str(artifacts.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    for example in ("volumesnapshotclass.yaml", "schedule.yaml"):
        applied = subprocess.run(
            [*kubectl, "apply", "-f", str(EXAMPLES / example)], capture_output=True, text=True, check=False
        )
        assert applied.returncode == 0, applied.stderr
    status = wait_for(
        "the example schedule to be reconciled",
        lambda: (s := schedules.status(namespace, "hourly")).get("targetCount") == 1 and s,
        timeout=60,
    )
    now = datetime.now(UTC)
    next_hour = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert parse_time(status["nextScheduleTime"]) == next_hour
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == "NoReadySnapshot"
    assert conditions["LimitPressure"]["status"] == "False"
    assert conditions["Progressing"]["reason"] == "Idle"
    shown = subprocess.run(
        [*kubectl, "get", "essched", "hourly"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "SCHEDULE", "SUSPENDED"]
    assert row.split()[:3] == ["hourly", "@hourly", "false"]
