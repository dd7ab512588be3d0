"""Leases: freezes that are all-or-nothing, journaled before they happen and thawed by a timer.

Every path out of a freeze thaws: the request's own failure, Thaw, the TTL timer, a stop
signal, and (when the agent died) its next start, from the journal. Only a file system found
frozen by someone else (EBUSY) is left alone, on every one of those paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import AlreadyExists, InvalidRequest, NotFound
from elasticsan_snapshotter.domain.freeze import FrozenBySomeoneElse, LeaseState, Target, check_lease_id
from elasticsan_snapshotter.freeze import ioctl
from elasticsan_snapshotter.freeze.journal import FREEZING, FrozenMount, Journal, LeaseRecord
from elasticsan_snapshotter.freeze.mounts import MountResolver, device_of, mount_of_device

log = logging.getLogger(__name__)

MAX_TARGETS = 64


class LeaseBook:
    def __init__(
        self,
        resolver: MountResolver,
        journal: Journal,
        *,
        node_name: str,
        max_ttl: float,
        keep_results: float,
    ) -> None:
        self.resolver = resolver
        self.journal = journal
        self.node_name = node_name
        self.max_ttl = max_ttl
        self.keep_results = keep_results
        self.boot_id = uuid.uuid4().hex
        self._records: dict[str, LeaseRecord] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._expiries: set[asyncio.Task[None]] = set()
        self._unthawed: dict[str, tuple[FrozenMount, float]] = {}
        """Device → (mount, when it should have been thawed), for thaws that failed."""
        self._lock = asyncio.Lock()

    # --- start and stop ---------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Thaw every lease the journal lists as not ended: the agent that froze them is gone."""
        async with self._lock:
            self._records = await asyncio.to_thread(self.journal.load)
            thawed = [r.lease_id for r in self._records.values() if not r.ended]
            for lease_id in thawed:
                await self._end(self._records[lease_id], LeaseState.THAWED_ON_RESTART)
            await self._save()
        for lease_id in thawed:
            log.warning("thawed lease %s left frozen by a previous run", lease_id, extra={"lease": lease_id})
        return thawed

    async def thaw_all(self, state: LeaseState = LeaseState.THAWED_ON_SHUTDOWN) -> list[str]:
        async with self._lock:
            active = [r for r in self._records.values() if not r.ended]
            for record in active:
                await self._end(record, state)
            if active:
                await self._save()
            return [r.lease_id for r in active]

    # --- the three calls --------------------------------------------------------------------

    async def freeze(self, lease_id: str, targets: Sequence[Target], ttl: float) -> LeaseRecord:
        check_lease_id(lease_id)
        if not 0 < ttl <= self.max_ttl:
            raise InvalidRequest(f"TTL {ttl:g}s must be more than 0 and at most {self.max_ttl:g}s")
        if not 0 < len(targets) <= MAX_TARGETS:
            raise InvalidRequest(f"a lease needs 1 to {MAX_TARGETS} targets, not {len(targets)}")
        async with self._lock:
            existing = self._records.get(lease_id)
            if existing is not None:
                same = {m.target for m in existing.mounts} == set(targets)
                if same and not existing.ended:
                    return existing  # a retried request whose answer was lost
                raise AlreadyExists(
                    f"lease {lease_id} exists ({existing.lease_state().value}) with these or other targets"
                )
            resolved = [self.resolver.resolve(t) for t in dict.fromkeys(targets)]
            held = {m.device: r.lease_id for r in self._records.values() if not r.ended for m in r.mounts}
            for mount in resolved:
                if mount.device in held:
                    raise AlreadyExists(f"{mount.path} is already frozen under lease {held[mount.device]}")
            now = time.time()
            record = LeaseRecord(
                lease_id=lease_id,
                state=FREEZING,
                boot_id=self.boot_id,
                node_name=self.node_name,
                mounts=[
                    FrozenMount(m.target.pod_uid, m.target.pv_name, str(m.path), m.device) for m in resolved
                ],
                frozen_at=now,
                expires_at=now + ttl,
            )
            self._records[lease_id] = record
            await self._save()  # durable before the first freeze: a crash from here on is thawed at restart
            loop = asyncio.get_running_loop()
            self._timers[lease_id] = loop.call_later(ttl, self._start_expiry, lease_id)
            try:
                await self._freeze_all(record)
            except BaseException:
                self._cancel_timer(lease_id)
                del self._records[lease_id]
                await self._save()
                raise
            record.state = LeaseState.ACTIVE.value
            return record

    def get(self, lease_id: str) -> LeaseRecord:
        record = self._records.get(lease_id)
        if record is None:
            raise NotFound(f"lease {lease_id} is not known to this agent (boot {self.boot_id})")
        return record

    async def thaw(self, lease_id: str) -> tuple[bool, LeaseRecord]:
        async with self._lock:
            record = self.get(lease_id)
            if record.ended:
                return False, record
            await self._end(record, LeaseState.THAWED)
            await self._save()
            return True, record

    # --- inside -----------------------------------------------------------------------------

    async def _freeze_all(self, record: LeaseRecord) -> None:
        """Freeze every file system at once (each freeze flushes its own); on any failure thaw
        the ones that froze and raise, a file system frozen by someone else first."""
        mounts = _unique(record.mounts)
        results = await asyncio.gather(
            *(asyncio.to_thread(ioctl.freeze, Path(m.mount_path)) for m in mounts), return_exceptions=True
        )
        errors = [(m, r) for m, r in zip(mounts, results, strict=True) if isinstance(r, BaseException)]
        if not errors:
            return
        busy = {m.device for m, r in errors if isinstance(r, FrozenBySomeoneElse)}
        if busy:
            for mount in record.mounts:
                mount.busy = mount.device in busy
            await self._save()  # so that not even a restart thaws them
        failed = {m.device for m, _ in errors}
        await self._thaw_mounts([m for m in mounts if m.device not in failed])
        raise next((r for _, r in errors if isinstance(r, FrozenBySomeoneElse)), errors[0][1])

    def _start_expiry(self, lease_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(lease_id))
        self._expiries.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._expiries.discard)

    async def _expire(self, lease_id: str) -> None:
        async with self._lock:
            record = self._records.get(lease_id)
            if record is None or record.ended:
                return
            await self._end(record, LeaseState.EXPIRED)
            await self._save()
        metrics.FREEZE_LEASES_EXPIRED.inc()
        log.warning("lease %s expired at its TTL and was thawed", lease_id, extra={"lease": lease_id})

    async def _end(self, record: LeaseRecord, state: LeaseState) -> None:
        self._cancel_timer(record.lease_id)
        await self._thaw_mounts(
            _unique(m for m in record.mounts if not m.busy), min(record.expires_at, time.time())
        )
        record.state = state.value
        record.ended_at = time.time()

    async def _thaw_mounts(self, mounts: Sequence[FrozenMount], due: float = 0.0) -> None:
        """Thaw each mount; one that fails is kept, retried by ``retry_unthawed`` and reported as overdue."""
        thawed = await asyncio.gather(*(self._thaw_one(m) for m in mounts))
        for mount, ok in zip(mounts, thawed, strict=True):
            if ok:
                self._unthawed.pop(mount.device, None)
            else:
                self._unthawed.setdefault(mount.device, (mount, due or time.time()))

    async def _thaw_one(self, mount: FrozenMount) -> bool:
        path = Path(mount.mount_path)
        try:
            if device_of((await asyncio.to_thread(path.stat)).st_dev) != mount.device:
                raise FileNotFoundError(path)
        except OSError:
            # The pod's mount is gone (or replaced); the file system may still be mounted elsewhere.
            other = mount_of_device(mount.device, self.resolver.mountinfo)
            if other is None:
                # Unmounted everywhere: nothing can write to it any more, and nothing can thaw it.
                log.warning("not thawing %s (%s): no longer mounted anywhere", path, mount.device)
                return True
            path = other
        try:
            await asyncio.to_thread(ioctl.thaw, path)
        except OSError as exc:
            log.error("thawing %s failed: %s", path, exc)
            return False
        return True

    async def retry_unthawed(self) -> None:
        async with self._lock:
            for mount, due in list(self._unthawed.values()):
                await self._thaw_mounts([mount], due)

    def overdue_seconds(self) -> float:
        """How long the worst file system has stayed frozen past the end of its lease (0: none)."""
        now = time.time()
        late = [now - r.expires_at for r in self._records.values() if not r.ended]
        late += [now - due for _, due in self._unthawed.values()]
        return max([0.0, *late])

    def _cancel_timer(self, lease_id: str) -> None:
        timer = self._timers.pop(lease_id, None)
        if timer is not None:
            timer.cancel()

    async def _save(self) -> None:
        cutoff = time.time() - self.keep_results
        for lease_id in [k for k, r in self._records.items() if r.ended and r.ended_at < cutoff]:
            del self._records[lease_id]
        await asyncio.to_thread(self.journal.save, dict(self._records))


def _unique(mounts: Iterable[FrozenMount]) -> list[FrozenMount]:
    """One mount per file system: a superblock is frozen (and thawed) once."""
    seen: dict[str, FrozenMount] = {}
    for mount in mounts:
        seen.setdefault(mount.device, mount)
    return list(seen.values())


__all__ = ["MAX_TARGETS", "LeaseBook"]
