"""A keyed work queue with per-key backoff, in the manner of client-go's.

Watch events only *enqueue* a key; workers reconcile the latest known state
of that key. A key is never processed twice at once; one added while it is
processed runs again right after. A reconcile that asks to be re-checked,
or fails, comes back after a delay that doubles per consecutive attempt up
to a cap, independent of watch events: an un-ready snapshot keeps being
checked even if nothing in Kubernetes changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeue:
    """Reconcile again later: after ``after`` seconds, or after the key's backoff if None.

    ``minimum`` bounds the backoff from below (a ``Retry-After``, the next pacing slot).
    """

    after: float | None = None
    minimum: float = 0.0


DONE = None
Outcome = Requeue | None


class WorkQueue:
    def __init__(
        self,
        name: str,
        reconcile: Callable[[str], Awaitable[Outcome]],
        *,
        workers: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._attempts: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and existing.when() <= when:
            return  # an earlier wake-up is already scheduled
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: str) -> None:
        """The object is gone: drop its timer and backoff state."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._attempts.pop(key, None)

    def backoff(self, key: str) -> float:
        attempts = self._attempts.get(key, 0)
        self._attempts[key] = attempts + 1
        return float(min(self._base_delay * (2**attempts), self._max_delay))

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}")
                for i in range(self._workers)
            ]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def pending(self) -> int:
        return len(self._queued) + len(self._active) + len(self._timers)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                outcome = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: reconcile of %s failed unexpectedly", self.name, key)
                outcome = Requeue()
            finally:
                self._active.discard(key)
            if outcome is None:
                self._attempts.pop(key, None)
            else:
                delay = (
                    outcome.after if outcome.after is not None else max(self.backoff(key), outcome.minimum)
                )
                self.add_after(key, delay)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
