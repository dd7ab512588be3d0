"""The ``status`` of an ElasticSanSnapshotExport: phase, Kubernetes-style conditions, error, progress.

One status shape for the project's resources: ``phase``, ``conditions`` with
``observedGeneration``, and ``error{time,message}`` only while ``Failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.ports import DiskSnapshotInfo

PENDING = "Pending"
EXPORTING = "Exporting"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL = (SUCCEEDED, FAILED)

CONDITION_READY = "Ready"
CONDITION_PROGRESSING = "Progressing"


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_for(
    phase: str,
    reason: str,
    message: str,
    *,
    generation: int,
    previous: Iterable[Mapping[str, Any]] = (),
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions for a phase; a condition keeps its transition time while its status holds."""
    stamp = now or now_text()
    before = {str(c.get("type")): c for c in previous}
    wanted = {
        CONDITION_READY: phase == SUCCEEDED,
        CONDITION_PROGRESSING: phase in (PENDING, EXPORTING),
    }
    out: list[dict[str, Any]] = []
    for kind, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(kind) or {}
        out.append(
            {
                "type": kind,
                "status": status,
                "observedGeneration": generation,
                "lastTransitionTime": old.get("lastTransitionTime")
                if old.get("status") == status and old.get("lastTransitionTime")
                else stamp,
                "reason": reason,
                "message": message,
            }
        )
    return out


def status_patch(
    current: Mapping[str, Any],
    phase: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The ``status`` merge patch for a phase; empty when nothing would change.

    ``fields`` are further status fields (``progressPercent``, ``diskSnapshotId``, ...); a
    value of None removes the field. ``error`` is set only for ``Failed`` and removed otherwise.
    """
    stamp = now or now_text()
    wanted: dict[str, Any] = {"phase": phase, **fields}
    if phase == FAILED:
        if (current.get("error") or {}).get("message") != message:
            wanted["error"] = {"time": stamp, "message": message}
    elif current.get("error"):
        wanted["error"] = None
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    conditions = conditions_for(
        phase, reason, message, generation=generation, previous=current.get("conditions") or (), now=stamp
    )
    if _conditions_differ(current.get("conditions") or [], conditions):
        changed["conditions"] = conditions
    return changed


def _conditions_differ(old: list[Mapping[str, Any]], new: list[dict[str, Any]]) -> bool:
    keys = ("type", "status", "observedGeneration", "reason", "message")
    return [tuple(c.get(k) for k in keys) for c in old] != [tuple(c.get(k) for k in keys) for c in new]


def progress_percent(info: DiskSnapshotInfo) -> tuple[bool, int]:
    """Whether the copy is done, and its progress as a whole percent (100 only when done)."""
    progress = decisions.export_progress(info)
    if progress.done:
        return True, 100
    return False, min(99, int(progress.percent))


__all__ = [
    "CONDITION_PROGRESSING",
    "CONDITION_READY",
    "EXPORTING",
    "FAILED",
    "PENDING",
    "SUCCEEDED",
    "TERMINAL",
    "conditions_for",
    "now_text",
    "progress_percent",
    "status_patch",
]
