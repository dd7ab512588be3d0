"""Client-side pacing of Azure calls.

Three independent limits, applied in this order before an Azure call:

1. the per-volume snapshot pace (Elastic SAN takes at most 7 new snapshots per
   volume per 5 minutes): a create that would exceed it waits for its slot
   instead of failing;
2. the per-subscription write budget, a token bucket (ARM throttles writes with
   a bucket of its own; staying under it avoids 429 storms);
3. a concurrency cap on calls in flight.

Waiting happens before a concurrency slot is taken, so queued work never blocks
calls that could proceed. Time comes from an injectable clock and sleep, so the
arithmetic is unit-tested without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from elasticsan_snapshotter.azure.config import PacingConfig
from elasticsan_snapshotter.domain import decisions
from elasticsan_snapshotter.domain.errors import Throttled

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """A token bucket that hands out reservations: each caller learns how long to wait.

    Tokens may go negative: a reservation taken while the bucket is empty is a
    debt paid back by the refill, so waiters are served in the order they came.
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    @property
    def available(self) -> float:
        self._refill()
        return self._tokens

    def reserve(self) -> float:
        """Take one token; return the seconds to wait before using it (0 when one was free)."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class SnapshotPacer:
    """At most ``limit`` new snapshots per volume in any ``window`` seconds, by scheduling, not refusing."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or margin < 0:
            raise ValueError("a snapshot pacer needs a positive limit and window and no negative margin")
        self._limit = limit
        self._span = window + margin
        self._clock = clock
        self._slots: dict[str, deque[float]] = {}

    def delay(self, volume: str) -> float:
        """Seconds until the next slot for this volume, without taking it."""
        return self._next_slot(volume) - self._clock()

    def reserve(self, volume: str) -> float:
        """Take the next slot for this volume; return the seconds to wait for it."""
        slot = self._next_slot(volume)
        self._slots.setdefault(volume.lower(), deque()).append(slot)
        return slot - self._clock()

    def _next_slot(self, volume: str) -> float:
        now = self._clock()
        slots = self._slots.get(volume.lower())
        if slots is None:
            return now
        while slots and slots[0] <= now - self._span:
            slots.popleft()
        if not slots:
            del self._slots[volume.lower()]
            return now
        # The pace is the domain's rule; slots never go backwards, so callers are served in order.
        return max(slots[-1], decisions.next_snapshot_at(slots, now, limit=self._limit, window=self._span))


class Pacing:
    """The three limits of one adapter instance (one per process, hence per subscription)."""

    def __init__(
        self,
        config: PacingConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config or PacingConfig()
        self._sleep = sleep
        self.writes = TokenBucket(self.config.write_rate_per_second, self.config.write_burst, clock)
        self.snapshots = SnapshotPacer(
            self.config.snapshots_per_volume,
            self.config.snapshot_window_seconds,
            margin=self.config.snapshot_window_margin_seconds,
            clock=clock,
        )
        self._in_flight = asyncio.Semaphore(self.config.max_concurrency)

    async def before_snapshot(self, volume: str) -> float:
        """Wait for this volume's next snapshot slot; return how long that took."""
        limit = self.config.max_snapshot_queue_seconds
        if limit is not None:
            wait = self.snapshots.delay(volume)
            if wait > limit:
                raise Throttled(
                    f"volume {volume} already has {self.config.snapshots_per_volume} snapshots in the "
                    f"last {self.config.snapshot_window_seconds:g} s; next slot in {wait:.0f} s",
                    retry_after=wait,
                )
        wait = self.snapshots.reserve(volume)
        if wait > 0:
            await self._sleep(wait)
        return max(wait, 0.0)

    async def before_write(self) -> float:
        """Wait for a token of the write budget; return how long that took."""
        wait = self.writes.reserve()
        if wait > 0:
            await self._sleep(wait)
        return wait

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrency slots for the duration of a call."""
        async with self._in_flight:
            yield


__all__ = ["Clock", "Pacing", "Sleep", "SnapshotPacer", "TokenBucket"]
