"""The status of an ElasticSanSnapshotSchedule: conditions, times and a bounded per-claim summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
RETENTION_BLOCKED = "RetentionBlocked"
LIMIT_PRESSURE = "LimitPressure"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, RETENTION_BLOCKED, LIMIT_PRESSURE)

MAX_TARGETS_LISTED = 50
MAX_NAMES_IN_MESSAGE = 5


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: object) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text)).astimezone(UTC)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


def conditions(
    wanted: Iterable[Condition], *, generation: int, previous: Iterable[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions; each keeps its transition time while its status holds."""
    before = {str(c.get("type")): c for c in previous}
    out = []
    for c in wanted:
        status = "True" if c.status else "False"
        old = before.get(c.type) or {}
        out.append(
            {
                "type": c.type,
                "status": status,
                "observedGeneration": generation,
                "lastTransitionTime": old["lastTransitionTime"]
                if old.get("status") == status and old.get("lastTransitionTime")
                else stamp(now),
                "reason": c.reason,
                "message": c.message[:1024],
            }
        )
    return out


def conditions_differ(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> bool:
    keys = ("type", "status", "observedGeneration", "reason", "message")
    return [tuple(c.get(k) for k in keys) for c in old] != [tuple(c.get(k) for k in keys) for c in new]


def refused(reason: str, message: str) -> list[Condition]:
    """A spec that cannot run: nothing is created, and the status says why."""
    return [
        Condition(READY, False, reason, message),
        Condition(PROGRESSING, False, reason, message),
        Condition(DEGRADED, False, reason, ""),
        Condition(RETENTION_BLOCKED, False, reason, ""),
        Condition(
            LIMIT_PRESSURE, reason == "LimitExceeded", reason, message if reason == "LimitExceeded" else ""
        ),
    ]


@dataclass
class TargetSummary:
    claim: str
    ready: int = 0
    failed: int = 0
    in_progress: int = 0
    newest_ready: str = ""
    newest_ready_time: datetime | None = None
    last_failed: bool = False
    failure: str = ""
    azure_snapshots: int | None = None
    exports: int = 0
    message: str = ""

    @property
    def needs_attention(self) -> bool:
        return bool(self.last_failed or self.message or not self.ready)

    def render(self, limit: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "claim": self.claim,
            "readyCount": self.ready,
            "failedCount": self.failed,
            "exports": self.exports,
        }
        if self.newest_ready:
            out["newestReady"] = self.newest_ready
        if self.newest_ready_time is not None:
            out["newestReadyTime"] = stamp(self.newest_ready_time)
        if self.azure_snapshots is not None:
            out["azureSnapshots"] = self.azure_snapshots
            out["azureSnapshotLimit"] = limit
        message = self.message or (f"last run failed: {self.failure}" if self.last_failed else "")
        if message:
            out["message"] = message[:512]
        return out


@dataclass
class Outcome:
    """What one reconcile found; turned into the status patch."""

    schedule_uid: str = ""
    targets: dict[str, TargetSummary] = field(default_factory=dict)
    running: bool = False
    suspended: bool = False
    blocked: list[tuple[str, str]] = field(default_factory=list)
    pressure: str = ""
    last_schedule: datetime | None = None
    next_schedule: datetime | None = None
    last_success: datetime | None = None
    last_export: datetime | None = None
    skipped: tuple[datetime, str, str] | None = None

    def target(self, claim: str) -> TargetSummary:
        return self.targets.setdefault(claim, TargetSummary(claim))

    def wanted(self, target_names: Iterable[str]) -> list[Condition]:
        names = list(target_names)
        failed = sorted(n for n in names if self.target(n).last_failed)
        unready = sorted(n for n in names if not self.target(n).ready)
        degraded = Condition(DEGRADED, False, "LastRunsSucceeded")
        if failed:
            degraded = Condition(DEGRADED, True, "LastRunFailed", f"the last run failed for {_names(failed)}")
        if failed:
            ready = Condition(READY, False, "LastRunFailed", degraded.message)
        elif not names:
            ready = Condition(READY, False, "NoClaims", "no claim matches spec.source")
        elif unready:
            ready = Condition(READY, False, "NoReadySnapshot", f"no ready snapshot yet of {_names(unready)}")
        else:
            ready = Condition(READY, True, "Scheduled", f"every claim ({len(names)}) has a ready snapshot")
        if self.suspended:
            progressing = Condition(PROGRESSING, False, "Suspended", "spec.suspend is true: no new runs")
        elif self.running:
            progressing = Condition(
                PROGRESSING, True, "Running", "snapshots of the current run are in progress"
            )
        else:
            progressing = Condition(PROGRESSING, False, "Idle", "waiting for the next tick")
        blocked = Condition(RETENTION_BLOCKED, False, "NothingBlocked")
        if self.blocked:
            listed = "; ".join(f"{name} ({why})" for name, why in sorted(self.blocked)[:MAX_NAMES_IN_MESSAGE])
            more = len(self.blocked) - MAX_NAMES_IN_MESSAGE
            listed += f"; and {more} more" if more > 0 else ""
            blocked = Condition(
                RETENTION_BLOCKED,
                True,
                "InUse",
                f"{len(self.blocked)} snapshot(s) kept past retention: {listed}",
            )
        pressure = Condition(LIMIT_PRESSURE, False, "WithinLimits")
        if self.pressure:
            pressure = Condition(LIMIT_PRESSURE, True, "SharedVolumeLimits", self.pressure)
        return [ready, progressing, degraded, blocked, pressure]

    def fields(self, target_names: Iterable[str], limit: int) -> dict[str, Any]:
        names = set(target_names)
        summaries = sorted(
            (t for t in self.targets.values() if t.claim in names or t.ready or t.failed),
            key=lambda t: (not t.needs_attention, t.claim),
        )
        out: dict[str, Any] = {
            "targetCount": len(names),
            "readyCount": sum(t.ready for t in self.targets.values()),
            "targets": [t.render(limit) for t in summaries[:MAX_TARGETS_LISTED]],
        }
        for key, value in (
            ("lastScheduleTime", self.last_schedule),
            ("nextScheduleTime", self.next_schedule),
            ("lastSuccessfulTime", self.last_success),
            ("lastExportTime", self.last_export),
        ):
            if value is not None:
                out[key] = stamp(value)
        if self.skipped is not None:
            when, reason, message = self.skipped
            out["lastSkipped"] = {"time": stamp(when), "reason": reason, "message": message[:1024]}
        return out


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


def patch(
    current: Mapping[str, Any],
    fields: Mapping[str, Any],
    wanted: list[Condition],
    *,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """The status merge patch; empty when nothing would change."""
    changed = {k: v for k, v in fields.items() if current.get(k) != v}
    if current.get("observedGeneration") != generation:
        changed["observedGeneration"] = generation
    new = conditions(wanted, generation=generation, previous=current.get("conditions") or (), now=now)
    if conditions_differ(current.get("conditions") or [], new):
        changed["conditions"] = new
    return changed


__all__ = [
    "CONDITION_TYPES",
    "DEGRADED",
    "LIMIT_PRESSURE",
    "PROGRESSING",
    "READY",
    "RETENTION_BLOCKED",
    "Condition",
    "Outcome",
    "TargetSummary",
    "conditions",
    "parse_stamp",
    "patch",
    "refused",
    "stamp",
]
