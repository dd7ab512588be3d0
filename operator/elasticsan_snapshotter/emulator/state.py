"""Everything the emulator knows, persisted in the state directory before a response is sent.

``state.json`` is a whole snapshot, written atomically (temporary file, fsync, rename,
fsync of the directory). Between snapshots each request that changed known records
appends one line with their new values to ``journal.jsonl``; loading replays the lines
newer than the snapshot. An append is one ``write`` whatever the size of the state, and
it reaches the kernel before the answer leaves, so a crash of the process loses nothing
acknowledged (a crash of the machine may lose the lines not yet on disk). A change that
names no record (``mark_dirty``) still writes a whole snapshot, as does a long journal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FORMAT_VERSION = 1

COMPACT_AFTER = 5000
"""Journal lines after which the next commit writes a snapshot and empties the journal."""

Record = dict[str, Any]
_SECTIONS = ("resources", "operations")


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.journal_path = state_dir / "journal.jsonl"
        self.identity: dict[str, str] = {}
        # Keyed by the lower-cased ARM id (ARM names are case-insensitive).
        self.resources: dict[str, Record] = {}
        self.operations: dict[str, Record] = {}
        self.tokens: dict[str, Record] = {}
        self._dirty = False
        # Keys changed since the last commit, per section; written as a journal line.
        self._touched: dict[str, set[str]] = {section: set() for section in _SECTIONS}
        # Resources read since the last commit: a write request may have changed them in place.
        self._read: set[str] = set()
        self._sequence = 0
        self._journal_lines = 0
        # Called with each removed record (contents free their files).
        self.on_remove: list[Callable[[Record], None]] = []
        # Indexes by kind, by (parent, kind) and by source volume, so that a request costs the
        # same with ten or ten thousand stored resources (a snapshot PUT looks up its siblings).
        self._by_kind: dict[str, dict[str, Record]] = {}
        self._by_parent: dict[tuple[str, str], dict[str, Record]] = {}
        self._by_source: dict[str, dict[str, Record]] = {}

    def load(self) -> None:
        if self.path.exists():
            document = json.loads(self.path.read_text(encoding="utf-8"))
            if document.get("version") != _FORMAT_VERSION:
                raise ValueError(f"{self.path}: unsupported state format {document.get('version')!r}")
            self.identity = document["identity"]
            self.resources = document["resources"]
            self.operations = document["operations"]
            self.tokens = document["tokens"]
            self._sequence = int(document.get("sequence", 0))
        self._replay()
        for key, record in self.resources.items():
            self._index(key, record)

    def _replay(self) -> None:
        if not self.journal_path.exists():
            return
        for line in self.journal_path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                break  # a line torn by a crash: nothing after it was acknowledged
            if entry["seq"] <= self._sequence:
                continue  # already in the snapshot
            for section in _SECTIONS:
                target: dict[str, Record] = getattr(self, section)
                for key, value in entry.get(section, {}).items():
                    if value is None:
                        target.pop(key, None)
                    else:
                        target[key] = value
            self._sequence = entry["seq"]
            self._journal_lines += 1

    def mark_dirty(self) -> None:
        """Something changed that no key names: the next commit writes a whole snapshot."""
        self._dirty = True

    def touch(self, resource_id: str) -> None:
        """The resource ``resource_id`` changed in place (or is gone)."""
        self._touched["resources"].add(resource_id.lower())

    def touch_operation(self, op_id: str) -> None:
        self._touched["operations"].add(op_id)

    def save_if_dirty(self, *, writes: bool = True) -> None:
        """Persist what changed since the last call: a journal line, or a snapshot when needed.

        ``writes``: the request may have changed records it read (a PUT updates its parent's
        counters in place), so those are journalled too; reads change only what they touch.
        """
        if writes:
            self._touched["resources"] |= self._read
        self._read.clear()
        if self._dirty or self._journal_lines >= COMPACT_AFTER:
            self.save()
            return
        if not any(self._touched.values()):
            return
        self._sequence += 1
        entry: dict[str, Any] = {"seq": self._sequence}
        for section, keys in self._touched.items():
            values: dict[str, Record] = getattr(self, section)
            entry[section] = {key: values.get(key) for key in keys}
            keys.clear()
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._journal_lines += 1

    def save(self) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "sequence": self._sequence,
            "identity": self.identity,
            "resources": self.resources,
            "operations": self.operations,
            "tokens": self.tokens,
        }
        data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")
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
        # The snapshot holds every journal line: start the journal afresh.
        self.journal_path.unlink(missing_ok=True)
        self._journal_lines = 0
        for keys in self._touched.values():
            keys.clear()
        self._dirty = False

    # Resource helpers -------------------------------------------------------------------

    def get(self, resource_id: str) -> Record | None:
        key = resource_id.lower()
        found = self.resources.get(key)
        if found is not None:
            self._read.add(key)
        return found

    def put(self, record: Record) -> None:
        key = record["id"].lower()
        previous = self.resources.get(key)
        if previous is not None:
            self._unindex(key, previous)
        self.resources[key] = record
        self._index(key, record)
        self.touch(record["id"])

    def remove(self, resource_id: str) -> None:
        key = resource_id.lower()
        record = self.resources.pop(key, None)
        self.touch(resource_id)
        if record is not None:
            self._unindex(key, record)
            for hook in self.on_remove:
                hook(record)

    def _index(self, key: str, record: Record) -> None:
        self._by_kind.setdefault(record["kind"], {})[key] = record
        if record.get("parent"):
            self._by_parent.setdefault((record["parent"], record["kind"]), {})[key] = record
        if record.get("source"):
            self._by_source.setdefault(record["source"], {})[key] = record

    def _unindex(self, key: str, record: Record) -> None:
        self._by_kind.get(record["kind"], {}).pop(key, None)
        if record.get("parent"):
            self._by_parent.get((record["parent"], record["kind"]), {}).pop(key, None)
        if record.get("source"):
            self._by_source.get(record["source"], {}).pop(key, None)

    def children(self, parent_id: str, kind: str, *, ordered: bool = True) -> list[Record]:
        """``kind`` resources under ``parent_id``, by name; ``ordered=False`` skips the sort (counts, sums)."""
        found = list(self._by_parent.get((parent_id.lower(), kind), {}).values())
        return sorted(found, key=lambda r: str(r["name"]).lower()) if ordered else found

    def of_source(self, source_id: str) -> list[Record]:
        """Resources made from ``source_id`` (the snapshots of a volume), in no particular order."""
        return list(self._by_source.get(source_id.lower(), {}).values())

    def of_kind(self, kind: str) -> list[Record]:
        found = list(self._by_kind.get(kind, {}).values())
        return sorted(found, key=lambda r: str(r["id"]).lower())
