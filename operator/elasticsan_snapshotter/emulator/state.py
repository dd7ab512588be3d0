"""Everything the emulator knows, persisted as one JSON document in the state directory.

Writes are atomic (temporary file, fsync, rename, fsync of the directory) and happen
before a response is sent, so a crash never loses an acknowledged change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FORMAT_VERSION = 1

Record = dict[str, Any]


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.identity: dict[str, str] = {}
        # Keyed by the lower-cased ARM id (ARM names are case-insensitive).
        self.resources: dict[str, Record] = {}
        self.operations: dict[str, Record] = {}
        self.tokens: dict[str, Record] = {}
        self._dirty = False
        # Called with each removed record (contents free their files).
        self.on_remove: list[Callable[[Record], None]] = []

    def load(self) -> None:
        if not self.path.exists():
            return
        document = json.loads(self.path.read_text(encoding="utf-8"))
        if document.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{self.path}: unsupported state format {document.get('version')!r}")
        self.identity = document["identity"]
        self.resources = document["resources"]
        self.operations = document["operations"]
        self.tokens = document["tokens"]

    def mark_dirty(self) -> None:
        self._dirty = True

    def save_if_dirty(self) -> None:
        if self._dirty:
            self.save()

    def save(self) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "identity": self.identity,
            "resources": self.resources,
            "operations": self.operations,
            "tokens": self.tokens,
        }
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        # The rename itself must reach the disk before the change is acknowledged.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._dirty = False

    # Resource helpers -------------------------------------------------------------------

    def get(self, resource_id: str) -> Record | None:
        return self.resources.get(resource_id.lower())

    def put(self, record: Record) -> None:
        self.resources[record["id"].lower()] = record
        self._dirty = True

    def remove(self, resource_id: str) -> None:
        record = self.resources.pop(resource_id.lower(), None)
        self._dirty = True
        if record is not None:
            for hook in self.on_remove:
                hook(record)

    def children(self, parent_id: str, kind: str) -> list[Record]:
        parent_key = parent_id.lower()
        found = [r for r in self.resources.values() if r["kind"] == kind and r.get("parent") == parent_key]
        return sorted(found, key=lambda r: str(r["name"]).lower())

    def of_kind(self, kind: str) -> list[Record]:
        found = [r for r in self.resources.values() if r["kind"] == kind]
        return sorted(found, key=lambda r: str(r["id"]).lower())
