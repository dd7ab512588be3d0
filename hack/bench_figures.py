"""Figures for hack/bench.py: the audit log, the emulator's access log, /proc, and the table.

Everything here reads files and numbers; nothing starts processes.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})
DRIVER_ACTORS = {"operator": ("elasticsan-snapshotter", "kopf"), "sidecar": ("csi-snapshotter",)}
"""Audit user agents (up to the first '/') of each arm's driver processes."""
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class TailReader:
    """Lines appended to a file since the last read (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


# -- the audit log --------------------------------------------------------------------------


@dataclass
class AuditEvent:
    time: float
    actor: str
    verb: str
    resource: str
    subresource: str
    name: str
    code: int


def audit_events(raw: Iterable[dict[str, Any]]) -> list[AuditEvent]:
    events = []
    for entry in raw:
        if entry.get("stage") != "ResponseComplete":
            continue
        ref = entry.get("objectRef") or {}
        events.append(
            AuditEvent(
                time=parse_time(entry["stageTimestamp"]),
                actor=str(entry.get("userAgent") or "").split("/", 1)[0],
                verb=str(entry.get("verb")),
                resource=str(ref.get("resource") or ""),
                subresource=str(ref.get("subresource") or ""),
                name=str(ref.get("name") or ""),
                code=int((entry.get("responseStatus") or {}).get("code") or 0),
            )
        )
    return events


def driver_calls(events: Iterable[AuditEvent], arm: str, start: float, end: float) -> dict[str, Any]:
    """Reads and writes of one arm's driver in a time window, with a breakdown by call."""
    actors = DRIVER_ACTORS[arm]
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    for event in events:
        if not (start <= event.time <= end) or event.actor not in actors:
            continue
        key = f"{event.actor} {event.verb} {event.resource}{'/' + event.subresource if event.subresource else ''}"
        if event.verb in WRITE_VERBS:
            writes[key] += 1
        elif event.verb in READ_VERBS:
            reads[key] += 1
    return {
        "writes": sum(writes.values()),
        "reads": sum(reads.values()),
        "write_calls": dict(writes),
        "read_calls": dict(reads),
    }


def content_stages(
    events: Iterable[AuditEvent], arm: str, contents: dict[str, float]
) -> dict[str, list[float]]:
    """Per content (name -> time its VolumeSnapshot was created): when it was made, picked up, ready.

    A content is made by snapshot-controller or, in the operator arm, by the driver itself; the
    driver's first write is its first one after that create. A content made twice was handed
    back (docs/architecture.md, "Handing a content back").
    """
    actors = DRIVER_ACTORS[arm]
    created: dict[str, float] = {}
    creates: Counter[str] = Counter()
    made_by_driver: set[str] = set()
    picked: dict[str, float] = {}
    status: dict[str, float] = {}
    for event in events:
        if event.resource != "volumesnapshotcontents" or event.name not in contents:
            continue
        if event.verb == "create":
            if 200 <= event.code < 300:
                created.setdefault(event.name, event.time)
                creates[event.name] += 1
                if event.actor in actors:
                    made_by_driver.add(event.name)
        elif event.actor in actors and event.verb in WRITE_VERBS:
            picked[event.name] = min(picked.get(event.name, event.time), event.time)
            if event.subresource == "status":
                status[event.name] = min(status.get(event.name, event.time), event.time)
    return {
        "content_created_s": [created[n] - contents[n] for n in created],
        "driver_pickup_s": [picked[n] - created[n] for n in picked if n in created],
        "status_written_s": [status[n] - picked[n] for n in status if n in picked],
        "made_by_driver": [float(n in made_by_driver) for n in created],
        # Made twice: the driver handed its content back, snapshot-controller made its own.
        "remade": [float(creates[n] > 1) for n in created],
    }


# -- the emulator's access log ----------------------------------------------------------------


def azure_calls(entries: Iterable[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Snapshot requests to the emulator in a window: accepted PUTs, reads, 429s, 5xx answers."""
    by_call: Counter[str] = Counter()
    puts_accepted = reads = throttled = server_errors = total = 0
    for entry in entries:
        if not (start <= entry["start"] <= end) or entry["kind"] in ("admin", "token", "openid"):
            continue
        total += 1
        by_call[f"{entry['method']} {entry['kind']} {entry['status']}"] += 1
        if entry["status"] == 429:
            throttled += 1
        if entry["status"] >= 500:
            server_errors += 1
        if entry["kind"] == "volumeSnapshots" and entry["method"] == "PUT" and entry["status"] in (200, 201):
            puts_accepted += 1
        if entry["method"] == "GET" and entry["kind"] in ("volumeSnapshots", "operations"):
            reads += 1
    return {
        "requests": total,
        "puts_accepted": puts_accepted,
        "reads": reads,
        "throttled": throttled,
        "server_errors": server_errors,
        "by_call": dict(by_call),
    }


# -- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def memory_mib(pid: int | None) -> dict[str, float]:
    """VmRSS and VmHWM (peak) in MiB."""
    found = {"rss": 0.0, "peak": 0.0}
    if pid is None:
        return found
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        if line.startswith("VmRSS:"):
            found["rss"] = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            found["peak"] = int(line.split()[1]) / 1024
    return found


@dataclass
class CpuMeter:
    """CPU seconds per named process between ``start()`` and ``stop()``."""

    pids: dict[str, int | None]
    before: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.before.get(name, 0.0) for name, pid in self.pids.items()}


# -- aggregation and the table -------------------------------------------------------------------


def p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def median_of(trials: Sequence[dict[str, Any]], path: str) -> float | None:
    values = []
    for trial in trials:
        value: Any = trial
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


@dataclass
class Row:
    measure: str
    operator: float | None
    sidecar: float | None
    unit: str
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.operator is None or not self.sidecar:
            return None
        return self.operator / self.sidecar


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 10:
        return f"{value:.2f} s"
    if unit in ("s", "ms", "MiB"):
        return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{value:.2f}"


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| measure | operator | sidecar + CSI | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(
            f"| {row.measure} | {_fmt(row.operator, row.unit)} | {_fmt(row.sidecar, row.unit)} | "
            f"{ratio} | {row.target} | {met} |"
        )
    return "\n".join(lines)
