"""One operation at a time per volume or snapshot; a second one is turned away, not queued.

The CSI spec asks for ABORTED when an operation is pending on the same ID: the CO
retries with backoff, and a queued duplicate would only repeat the first call's work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from elasticsan_snapshotter.csi.errors import OperationPending


class InFlight:
    """Keys of the operations running now (case-folded: ARM names compare without case)."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def busy(self, key: str) -> bool:
        return key.casefold() in self._keys

    @asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        wanted = {k.casefold() for k in keys}
        taken = wanted & self._keys
        if taken:
            raise OperationPending(f"an operation on {', '.join(sorted(taken))} is already in progress")
        # No await between the check and the add: on one event loop this is atomic.
        self._keys |= wanted
        try:
            yield
        finally:
            self._keys -= wanted


__all__ = ["InFlight"]
