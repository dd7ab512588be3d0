"""Request counters per (method, resource kind, status), for tests that count writes."""

from __future__ import annotations

from collections import Counter
from typing import Any

# Status recorded for a connection the emulator dropped on purpose.
DROPPED = 0


class RequestCounters:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, int]] = Counter()

    def add(self, method: str, kind: str, status: int) -> None:
        self._counts[(method.upper(), kind, status)] += 1

    def reset(self) -> None:
        self._counts.clear()

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"method": method, "kind": kind, "status": status, "count": count}
            for (method, kind, status), count in sorted(self._counts.items())
        ]
