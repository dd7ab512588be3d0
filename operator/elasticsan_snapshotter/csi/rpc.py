"""What every CSI handler shares: domain errors become gRPC statuses, and each call is counted and logged."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import grpc
from prometheus_client import Counter, Histogram

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.csi.errors import grpc_code
from elasticsan_snapshotter.domain.errors import SnapshotterError

log = logging.getLogger(__name__)

CSI_RPCS = Counter(
    "csi_rpcs",
    "CSI RPCs served, by method and gRPC status code.",
    ["method", "code"],
    namespace=metrics.NAMESPACE,
    registry=metrics.REGISTRY,
)

CSI_RPC_DURATION = Histogram(
    "csi_rpc_duration_seconds",
    "Duration of CSI RPCs, Azure calls included.",
    ["method"],
    namespace=metrics.NAMESPACE,
    registry=metrics.REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)

# Calls that change something are logged at INFO; reads and probes only at DEBUG (they repeat a lot).
_QUIET = frozenset(
    {
        "GetPluginInfo",
        "GetPluginCapabilities",
        "Probe",
        "ControllerGetCapabilities",
        "ListSnapshots",
        "ValidateVolumeCapabilities",
    }
)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, Any], Coroutine[Any, Any, Resp]]


def rpc(func: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """Wrap a servicer method: map domain errors to a status, record the outcome."""
    method = func.__name__

    @functools.wraps(func)
    async def handler(self: S, request: Req, context: Any) -> Resp:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        detail = ""
        try:
            return await func(self, request, context)
        except SnapshotterError as error:
            code, detail = grpc_code(error), error.message
            await context.abort(code, detail)
            raise  # abort() raises; this line only informs the type checker
        except asyncio.CancelledError:
            code, detail = grpc.StatusCode.CANCELLED, "cancelled"
            raise
        except Exception as error:
            code, detail = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
            log.exception("csi %s failed unexpectedly", method, extra={"method": method})
            await context.abort(code, detail)
            raise
        finally:
            _record(method, code, detail, time.monotonic() - started)

    return handler


def _record(method: str, code: Any, detail: str, elapsed: float) -> None:
    name = str(code.name)
    CSI_RPCS.labels(method, name).inc()
    CSI_RPC_DURATION.labels(method).observe(elapsed)
    if code != grpc.StatusCode.OK:
        level = logging.WARNING
    else:
        level = logging.DEBUG if method in _QUIET else logging.INFO
    log.log(
        level,
        "csi %s: %s in %.3fs%s",
        method,
        name,
        elapsed,
        f" ({detail})" if detail else "",
        extra={"method": method, "code": name},
    )


__all__ = ["CSI_RPCS", "CSI_RPC_DURATION", "rpc"]
