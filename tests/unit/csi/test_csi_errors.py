from __future__ import annotations

import grpc
import pytest

from elasticsan_snapshotter.csi.errors import (
    GRPC_CODES,
    CapacityOutOfRange,
    InvalidPageToken,
    OperationPending,
    grpc_code,
)
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

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest, Code.INVALID_ARGUMENT),
        (NotFound, Code.NOT_FOUND),
        (AlreadyExists, Code.ALREADY_EXISTS),
        (CapacityExhausted, Code.RESOURCE_EXHAUSTED),
        (LimitReached, Code.RESOURCE_EXHAUSTED),
        (Throttled, Code.UNAVAILABLE),
        (Transient, Code.UNAVAILABLE),
        (Forbidden, Code.PERMISSION_DENIED),
        (OperationPending, Code.ABORTED),
        (InvalidPageToken, Code.ABORTED),
        (CapacityOutOfRange, Code.OUT_OF_RANGE),
        (VolumeHasSnapshots, Code.FAILED_PRECONDITION),
        (SnapshotFailed, Code.INTERNAL),
        (SnapshotterError, Code.INTERNAL),
    ],
)
def test_each_domain_error_has_its_code(error: type[SnapshotterError], code: Code) -> None:
    assert grpc_code(error("boom")) == code


def test_a_subclass_takes_its_nearest_ancestors_code() -> None:
    class Flaky(Throttled):
        pass

    class BadHandle(InvalidRequest):
        pass

    assert Flaky not in GRPC_CODES
    assert grpc_code(Flaky("slow down")) == Code.UNAVAILABLE
    assert grpc_code(BadHandle("no")) == Code.INVALID_ARGUMENT


def test_the_in_flight_error_is_retryable() -> None:
    assert OperationPending("busy").retryable
