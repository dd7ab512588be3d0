"""Domain errors to gRPC status codes: the one table, and the lookup that walks it.

A class not in the table takes the code of its nearest ancestor that is, so a new
subclass in the domain maps sensibly without touching this module.
"""

from __future__ import annotations

import grpc

from elasticsan_snapshotter.domain.decisions import SnapshotFailed, VolumeHasSnapshots
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    CapacityExhausted,
    Forbidden,
    InvalidRequest,
    LimitReached,
    NotFound,
    SnapshotterError,
    Throttled,
    Transient,
)
from elasticsan_snapshotter.domain.provisioning import CapacityOutOfRange


class OperationPending(SnapshotterError):
    """Another call on the same volume or snapshot is still running; the caller retries later."""

    reason = "OperationPending"
    retryable = True
    default_retry_after = 1.0


class InvalidPageToken(InvalidRequest):
    """A ListSnapshots ``starting_token`` that this plugin did not hand out."""

    reason = "InvalidPageToken"


GRPC_CODES: dict[type[SnapshotterError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    CapacityExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    LimitReached: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Throttled: grpc.StatusCode.UNAVAILABLE,
    Transient: grpc.StatusCode.UNAVAILABLE,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    OperationPending: grpc.StatusCode.ABORTED,
    CapacityOutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    # The CSI spec asks for ABORTED here: the listing moved on and the CO should start again.
    InvalidPageToken: grpc.StatusCode.ABORTED,
    # The CSI spec: deleting a volume that would take its snapshots with it is refused this way.
    VolumeHasSnapshots: grpc.StatusCode.FAILED_PRECONDITION,
    # Azure failed the snapshot itself; re-issuing CreateSnapshot cannot help until it is deleted.
    SnapshotFailed: grpc.StatusCode.INTERNAL,
    SnapshotterError: grpc.StatusCode.INTERNAL,
}


def grpc_code(error: SnapshotterError) -> grpc.StatusCode:
    """The code for ``error``: its own class's entry, else its nearest ancestor's."""
    for cls in type(error).__mro__:
        code = GRPC_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


__all__ = ["GRPC_CODES", "CapacityOutOfRange", "InvalidPageToken", "OperationPending", "grpc_code"]
