"""The agent's journal: every lease, written durably before anything is frozen.

One JSON file, replaced atomically (write, fsync, rename, fsync the directory), so a crash
leaves either the old or the new journal, never half of one. A restarted agent reads it and
thaws every lease that had not ended; ended leases stay for a while so the operator can still
ask how they ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from elasticsan_snapshotter.domain.freeze import LeaseState, Target

JOURNAL_NAME = "leases.json"
_VERSION = 1


@dataclass
class FrozenMount:
    pod_uid: str
    pv_name: str
    mount_path: str
    device: str
    busy: bool = False
    """Found frozen by someone else (EBUSY): never thawed by us, not even after a restart."""

    @property
    def target(self) -> Target:
        return Target(self.pod_uid, self.pv_name)


@dataclass
class LeaseRecord:
    lease_id: str
    state: str
    """``Freezing`` until every target is frozen, then a ``LeaseState`` value."""
    boot_id: str
    node_name: str
    mounts: list[FrozenMount]
    frozen_at: float
    expires_at: float
    ended_at: float = 0.0

    @property
    def ended(self) -> bool:
        return self.ended_at > 0

    def lease_state(self) -> LeaseState:
        return LeaseState.ACTIVE if self.state == FREEZING else LeaseState(self.state)


FREEZING = "Freezing"


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_NAME

    def load(self) -> dict[str, LeaseRecord]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        records: dict[str, LeaseRecord] = {}
        for item in raw["leases"]:
            mounts = [FrozenMount(**m) for m in item.pop("mounts")]
            record = LeaseRecord(mounts=mounts, **item)
            records[record.lease_id] = record
        return records

    def save(self, records: dict[str, LeaseRecord]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": _VERSION, "leases": [asdict(r) for r in records.values()]}, indent=1)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


__all__ = ["FREEZING", "JOURNAL_NAME", "FrozenMount", "Journal", "LeaseRecord"]
