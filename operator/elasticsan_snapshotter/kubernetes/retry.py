"""The one policy that turns a domain error into what a reconciler does next.

The error vocabulary already says final or retryable (``domain/errors.py``); this
module decides, for every reconciler alike:

* **requeue delay**: a retryable error comes back after the key's exponential
  backoff, never sooner than the ``retry_after`` the error carries (Azure's
  ``Retry-After``, the next pacing slot); a conflict only backs off, quietly; a
  final error is looked at again after ``FINAL_RECHECK`` in case its cause was fixed;
* **Event**: one Warning per change, with the error's reason (``recorder`` skips repeats);
* **status**: only final errors reach the object's status, through the reconciler's
  own ``write_final`` (a content's ``status.error``, an export's ``Failed`` phase);
* **metric**: ``reconcile_errors_total{resource, reason, final}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.kubernetes.api import Body, Conflict
from elasticsan_snapshotter.kubernetes.events import NORMAL, WARNING, EventRecorder
from elasticsan_snapshotter.kubernetes.workqueue import Outcome, Requeue

FINAL_RECHECK = 300.0
"""An object with a final error is looked at again this often, in case its cause was fixed."""


class Waiting(SnapshotterError):
    """A precondition other controllers or time will fulfil: a Normal Event, then a look again later."""

    reason = "Waiting"
    retryable = True
    default_retry_after = 5.0


def delay_for(error: SnapshotterError) -> Requeue:
    """The requeue for an error, without side effects."""
    if error.final:
        return Requeue(FINAL_RECHECK)
    if isinstance(error, Waiting):
        return Requeue(error.retry_after)  # nothing failed: look again at a steady pace
    return Requeue(minimum=error.retry_after or 0.0)


async def handle(
    recorder: EventRecorder,
    obj: Body,
    error: SnapshotterError,
    *,
    resource: str,
    reason: str | None = None,
    write_final: Callable[[SnapshotterError], Awaitable[object]] | None = None,
) -> Outcome:
    """Event, status (final errors only) and metric for ``error`` on ``obj``; returns the requeue.

    ``reason`` replaces the error's own as the Event reason (for example
    ``ProvisioningFailed``, as csi-provisioner names it); the message then starts with
    the error's reason.
    """
    final = error.final
    metrics.RECONCILE_ERRORS.labels(resource=resource, reason=error.reason, final=str(final).lower()).inc()
    if isinstance(error, Conflict):
        return delay_for(error)  # the object changed under us: the next look reads the newer one
    message = f"{error.reason}: {error}" if reason else str(error)
    event_type = NORMAL if isinstance(error, Waiting) else WARNING
    await recorder.record(obj, event_type, reason or error.reason, message)
    if final and write_final is not None:
        await write_final(error)
    return delay_for(error)


__all__ = ["FINAL_RECHECK", "Waiting", "delay_for", "handle"]
