"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

Every replica watches (its stores stay warm), but only the holder of the Lease runs the
reconcilers. Kopf's own peering is active/standby too, but a standby only resumes once
the active's record is a full peering lifetime old (about a minute), and a paused
replica keeps whatever work its queues already hold; the Lease closes both gaps:

* a standby looks every ``retry_period`` seconds and takes the Lease once it has seen
  the same record, unrenewed, for ``lease_duration`` seconds of its *own* clock (so
  clock skew between nodes does not matter);
* the holder renews every ``retry_period`` seconds; when it could not renew for
  ``renew_deadline`` seconds (shorter than ``lease_duration``) it stops the process
  before anyone else may take over, so two replicas never act at once;
* a replica that stops cleanly releases the Lease, so a rollout hands over at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from elasticsan_snapshotter.domain.errors import AlreadyExists, NotFound, SnapshotterError
from elasticsan_snapshotter.kubernetes.api import Body, Conflict, KubeApi
from elasticsan_snapshotter.kubernetes.resources import LEASE

logger = logging.getLogger(__name__)


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(kw_only=True, eq=False)
class LeaderElector:
    api: KubeApi
    name: str
    namespace: str
    identity: str
    lease_duration: float = 10.0
    renew_deadline: float = 6.0
    retry_period: float = 2.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    leading: bool = False
    _observed: tuple[str, str, str] | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")

    async def run(self, on_started: Callable[[], Awaitable[None]], on_lost: Callable[[], None]) -> None:
        """Wait for the Lease, call ``on_started``, renew until stopped; ``on_lost`` if renewal fails."""
        while not await self.try_acquire_or_renew():
            await self.sleep(self.retry_period)
        self.leading = True
        logger.info("leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name)
        await on_started()
        renewed = self.clock()
        while True:
            await self.sleep(self.retry_period)
            if await self.try_acquire_or_renew():
                renewed = self.clock()
            elif self.clock() - renewed >= self.renew_deadline:
                self.leading = False
                logger.error(
                    "could not renew Lease %s/%s for %.0fs; stopping before another replica takes over",
                    self.namespace,
                    self.name,
                    self.clock() - renewed,
                )
                on_lost()
                return

    async def try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.api.get(LEASE, self.name, self.namespace)
            if lease is None:
                await self.api.create(LEASE, self._new_lease(), self.namespace)
                return True
            spec = lease.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            if holder == self.identity:
                await self._write(lease, {"renewTime": _now_micro()})
                return True
            if holder and not self._expired(lease):
                return False
            transitions = int(spec.get("leaseTransitions") or 0) + 1
            await self._write(
                lease,
                {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": _now_micro(),
                    "renewTime": _now_micro(),
                    "leaseTransitions": transitions,
                },
            )
            logger.info("took Lease %s/%s over from %r", self.namespace, self.name, holder or None)
            return True
        except (AlreadyExists, NotFound, Conflict):
            return False  # someone else created, changed or removed it meanwhile: look again
        except SnapshotterError as exc:
            logger.warning("Lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    async def release(self) -> None:
        """Give the Lease up (on a clean stop), so a standby takes over without waiting."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.api.get(LEASE, self.name, self.namespace)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                await self._write(lease, {"holderIdentity": None, "leaseDurationSeconds": 1})
        except SnapshotterError as exc:
            logger.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)

    def _expired(self, lease: Body) -> bool:
        spec = lease.get("spec") or {}
        record = (
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )
        now = self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now  # a change: the holder is alive
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        return now - self._observed_at >= duration

    async def _write(self, lease: Body, spec: Body) -> None:
        # The resourceVersion makes a concurrent taker (or renewer) fail with a conflict.
        patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": spec}
        await self.api.patch(LEASE, self.name, patch, self.namespace)

    def _new_lease(self) -> Body:
        now = _now_micro()
        return {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }


__all__ = ["LeaderElector"]
