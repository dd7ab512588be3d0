"""``spec`` of an ElasticSanSnapshotSchedule, read into the domain's terms.

The CRD schema refuses most mistakes first (counts, selector and names both
set, a retention that never deletes); what only the operator can judge (a
cron expression cronsim refuses, an unknown time zone, an interval under the
configured minimum) is an ``InvalidRequest`` here, which the reconciler
reports in status without creating anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.retention import Policy, policy_from_spec
from elasticsan_snapshotter.domain.schedule import MINIMUM_INTERVAL, Schedule, parse_duration, time_zone

PER_VOLUME = "PerVolume"
GROUP = "Group"
RETAIN = "Retain"
DELETE = "Delete"

LABEL_SCHEDULE_UID = f"{DRIVER_NAME}/schedule-uid"
"""On everything a schedule creates: retention touches only objects with its own UID."""
ANN_SCHEDULE = f"{DRIVER_NAME}/schedule"
LABEL_KEEP = f"{DRIVER_NAME}/keep"
ANN_SCHEDULED_TIME = f"{DRIVER_NAME}/scheduled-time"
ANN_CLAIM = f"{DRIVER_NAME}/claim"
ANN_EXPORT_TIME = f"{DRIVER_NAME}/export-time"
FIN_SCHEDULE = f"{DRIVER_NAME}/schedule-protection"
"""Only with ``deletionPolicy: Delete``: deleting the schedule first deletes what it made."""


@dataclass(frozen=True)
class ExportPlan:
    every_nth_run: int | None
    schedule: Schedule | None
    target: Mapping[str, Any]
    policy: Policy


@dataclass(frozen=True)
class ScheduleSpec:
    schedule: Schedule
    zone: ZoneInfo
    suspend: bool
    deadline: timedelta | None
    jitter: timedelta | None
    selector: Mapping[str, Any] | None
    claim_names: tuple[str, ...]
    mode: str
    snapshot_class: str | None
    group_snapshot_class: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    export: ExportPlan | None = None
    deletion_policy: str = RETAIN


def parse(body: Mapping[str, Any], *, minimum: timedelta = MINIMUM_INTERVAL) -> ScheduleSpec:
    spec = body.get("spec") or {}
    schedule = Schedule.parse(str(spec.get("schedule") or ""), minimum=minimum)
    zone = time_zone(spec.get("timeZone"))
    source = spec.get("source") or {}
    selector, names = source.get("selector"), tuple(source.get("claimNames") or ())
    if (selector is None) == (not names):
        raise InvalidRequest("spec.source must set exactly one of selector or claimNames")
    mode = str(spec.get("mode") or PER_VOLUME)
    if mode not in (PER_VOLUME, GROUP):
        raise InvalidRequest(f"spec.mode {mode!r} is not PerVolume or Group")
    policy = policy_from_spec(dict(spec.get("retention") or {}), parse_duration)
    if not policy.bounded:
        raise InvalidRequest(
            "spec.retention must set keepLast, maxAge or one of hourly, daily, weekly, monthly"
        )
    deadline = spec.get("startingDeadlineSeconds")
    jitter = spec.get("jitterSeconds")
    template = spec.get("template") or {}
    policy_name = str(spec.get("deletionPolicy") or RETAIN)
    if policy_name not in (RETAIN, DELETE):
        raise InvalidRequest(f"spec.deletionPolicy {policy_name!r} is not Retain or Delete")
    return ScheduleSpec(
        schedule=schedule,
        zone=zone,
        suspend=bool(spec.get("suspend", False)),
        deadline=timedelta(seconds=int(deadline)) if deadline else None,
        jitter=timedelta(seconds=int(jitter)) if jitter is not None else None,
        selector=selector,
        claim_names=names,
        mode=mode,
        snapshot_class=spec.get("snapshotClassName") or None,
        group_snapshot_class=spec.get("groupSnapshotClassName") or None,
        labels={str(k): str(v) for k, v in (template.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (template.get("annotations") or {}).items()},
        policy=policy,
        export=_export(spec.get("export"), minimum),
        deletion_policy=policy_name,
    )


def _export(raw: Mapping[str, Any] | None, minimum: timedelta) -> ExportPlan | None:
    if not raw:
        return None
    nth, cron = raw.get("everyNthRun"), raw.get("schedule")
    if (nth is None) == (cron is None):
        raise InvalidRequest("spec.export must set exactly one of everyNthRun or schedule")
    if nth is not None and int(nth) < 1:
        raise InvalidRequest(f"spec.export.everyNthRun must be at least 1, not {nth}")
    policy = policy_from_spec(dict(raw.get("retention") or {}), parse_duration)
    if not policy.bounded:
        raise InvalidRequest("spec.export.retention must set keepLast or maxAge")
    return ExportPlan(
        every_nth_run=int(nth) if nth is not None else None,
        schedule=Schedule.parse(str(cron), minimum=minimum) if cron is not None else None,
        target=dict(raw.get("target") or {}),
        policy=policy,
    )


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def targets(spec: ScheduleSpec, namespace: str, claims: list[Mapping[str, Any]]) -> list[str]:
    """Claim names this schedule snapshots (named claims even when they do not exist yet)."""
    if spec.claim_names:
        return sorted(set(spec.claim_names))
    assert spec.selector is not None
    found = []
    for claim in claims:
        meta = claim.get("metadata") or {}
        if meta.get("namespace") == namespace and selects(spec.selector, meta.get("labels") or {}):
            found.append(str(meta["name"]))
    return sorted(found)


__all__ = [
    "ANN_CLAIM",
    "ANN_EXPORT_TIME",
    "ANN_SCHEDULE",
    "ANN_SCHEDULED_TIME",
    "DELETE",
    "FIN_SCHEDULE",
    "GROUP",
    "LABEL_KEEP",
    "LABEL_SCHEDULE_UID",
    "PER_VOLUME",
    "RETAIN",
    "ExportPlan",
    "ScheduleSpec",
    "parse",
    "selects",
    "targets",
]
