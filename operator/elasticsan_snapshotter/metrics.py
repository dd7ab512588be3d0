"""Prometheus metrics of the whole process, defined in this one module.

All metrics live in ``REGISTRY`` (not the client library's global default), so
tests and embedders get exactly this process's series and nothing else;
``render()`` gives the text exposition format for a ``/metrics`` endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NAMESPACE = "elasticsan_snapshotter"

REGISTRY = CollectorRegistry(auto_describe=True)

AZURE_CALLS = Counter(
    "azure_calls",
    "Azure Resource Manager operations, by operation and outcome (Success or the domain error reason).",
    ["operation", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

AZURE_CALL_DURATION = Histogram(
    "azure_call_duration_seconds",
    "Duration of Azure operations, long-running ones until they finish, retries included.",
    ["operation"],
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)

AZURE_THROTTLED_RESPONSES = Counter(
    "azure_throttled_responses",
    "HTTP 429 responses from Azure, including those the SDK retried transparently.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

AZURE_PACING_WAIT = Histogram(
    "azure_pacing_wait_seconds",
    "Time spent waiting for client-side pacing (write budget, per-volume snapshot pace).",
    ["limit"],
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.0, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0, 300.0),
)


# --- the operator -----------------------------------------------------------------------

CREDENTIALS_FAILING = Gauge(
    "credentials_failing",
    "1 while a backend's credentials are refused again and again, even after logging in again.",
    ["backend"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

RECONCILE_ERRORS = Counter(
    "reconcile_errors",
    "Errors reconcilers met, by resource, reason and whether they were final (not retried soon).",
    ["resource", "reason", "final"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

SNAPSHOTS_CREATED = Counter(
    "snapshots_created",
    "Elastic SAN snapshots created or adopted for VolumeSnapshotContents.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SNAPSHOTS_DELETED = Counter(
    "snapshots_deleted",
    "Snapshots deleted in Azure for deleted VolumeSnapshotContents.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
MADE_CONTENTS_HANDED_BACK = Counter(
    "made_contents_handed_back",
    "Contents the operator made that snapshot-controller bound but never took up, deleted for it to remake.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SNAPSHOTS_FAILED = Counter(
    "snapshots_failed",
    "VolumeSnapshotContents that met a final error, by reason.",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SNAPSHOT_READY_SECONDS = Histogram(
    "snapshot_ready_seconds",
    "Time from VolumeSnapshotContent creation to readyToUse.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
)
RESTORES = Counter(
    "restores",
    "Volumes provisioned for PersistentVolumeClaims, by source (snapshot, disk-snapshot, empty) and outcome.",
    ["source", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
UNREADY_CONTENTS = Gauge(
    "unready_contents",
    "VolumeSnapshotContents of this driver that are not ready.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
OLDEST_UNREADY_SECONDS = Gauge(
    "oldest_unready_content_seconds",
    "Age of the oldest VolumeSnapshotContent of this driver that is not ready.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

GROUP_SNAPSHOTS = Counter(
    "group_snapshots",
    "VolumeGroupSnapshotContents cut (result Ready) or failed for good (result: the error reason).",
    ["result"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
GROUP_SNAPSHOT_LEVELS = Counter(
    "group_snapshot_levels",
    "Groups published, by the consistency level achieved (never the one requested).",
    ["level"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
GROUP_MEMBERS = Histogram(
    "group_snapshot_members",
    "Member volumes per group snapshot that became ready.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
GROUP_CUT_WINDOW = Histogram(
    "group_snapshot_cut_window_seconds",
    "Seconds from a group's first accepted member PUT to its last.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)


# --- freezes (operator and freeze agent) --------------------------------------------------

FREEZE_WINDOW_SECONDS = Histogram(
    "freeze_window_seconds",
    "Time file systems of a group were frozen, from the first freeze to the last thaw.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
FREEZE_LEASES_EXPIRED = Counter(
    "freeze_leases_expired",
    "Freeze leases that ran out before they were thawed on request (agent: thawed by its timer).",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
FREEZE_OVERDUE_SECONDS = Gauge(
    "freeze_overdue_seconds",
    "Freeze agent: how long the worst file system has stayed frozen past the end of its lease (0: none).",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
FREEZE_PROOFS_FAILED = Counter(
    "freeze_proofs_failed",
    "Group cuts whose freeze could not be proven to cover the cut, so not file-system consistent.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

SCHEDULE_RUNS = Counter(
    "schedule_runs",
    "Snapshots made by schedules, by result (Succeeded: became ready; Failed: ended in an error).",
    ["result"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SCHEDULE_SKIPPED = Counter(
    "schedule_skipped_runs",
    "Scheduled runs skipped, by reason (MissedStartingDeadline, MissedTicks, ClaimNotBound).",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RETENTION_DELETIONS = Counter(
    "retention_deletions",
    "Objects deleted by schedule retention, by kind (VolumeSnapshot, ElasticSanSnapshotExport).",
    ["kind"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SCHEDULE_TICK_TO_READY = Histogram(
    "schedule_tick_to_ready_seconds",
    "Time from a schedule's tick to its snapshot being seen ready (jitter included).",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)


def creation_age(body: Mapping[str, Any]) -> float | None:
    stamp = (body.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    created = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - created).total_seconds())


def observe_ready(body: Mapping[str, Any]) -> None:
    age = creation_age(body)
    if age is not None:
        SNAPSHOT_READY_SECONDS.observe(age)


def track_unready(unready: Callable[[], list[float]]) -> None:
    """Compute the un-ready gauges at scrape time from a function giving the ages of un-ready contents."""
    UNREADY_CONTENTS.set_function(lambda: float(len(unready())))
    OLDEST_UNREADY_SECONDS.set_function(lambda: max(unready(), default=0.0))


def render() -> bytes:
    """All metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


__all__ = [
    "AZURE_CALLS",
    "AZURE_CALL_DURATION",
    "AZURE_PACING_WAIT",
    "AZURE_THROTTLED_RESPONSES",
    "FREEZE_LEASES_EXPIRED",
    "FREEZE_OVERDUE_SECONDS",
    "FREEZE_PROOFS_FAILED",
    "FREEZE_WINDOW_SECONDS",
    "GROUP_CUT_WINDOW",
    "GROUP_MEMBERS",
    "GROUP_SNAPSHOTS",
    "GROUP_SNAPSHOT_LEVELS",
    "NAMESPACE",
    "OLDEST_UNREADY_SECONDS",
    "REGISTRY",
    "RESTORES",
    "RETENTION_DELETIONS",
    "SCHEDULE_RUNS",
    "SCHEDULE_SKIPPED",
    "SCHEDULE_TICK_TO_READY",
    "SNAPSHOTS_CREATED",
    "SNAPSHOTS_DELETED",
    "SNAPSHOTS_FAILED",
    "SNAPSHOT_READY_SECONDS",
    "UNREADY_CONTENTS",
]
