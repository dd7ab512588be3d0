"""The gRPC server: Identity and Controller on one unix socket, stopped gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from elasticsan_snapshotter.csi._stubs import add_controller_servicer, add_identity_servicer
from elasticsan_snapshotter.csi.controller import ControllerServicer
from elasticsan_snapshotter.csi.identity import IdentityServicer
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.domain.ports import AzurePort

log = logging.getLogger(__name__)

UNIX_SCHEME = "unix://"
GRACE_SECONDS = 10.0
"""How long calls in flight may finish after a stop signal; Azure operations keep running in Azure."""


def socket_path(endpoint: str) -> Path:
    """The filesystem path of ``unix:///abs/path`` (or a bare path), as the CSI sidecars write it."""
    path = endpoint[len(UNIX_SCHEME) :] if endpoint.startswith(UNIX_SCHEME) else endpoint
    if not path.startswith("/"):
        raise ValueError(f"endpoint {endpoint!r} must be unix:///absolute/path")
    return Path(path)


def build_server(
    azure: AzurePort, *, driver_name: str, subscription_id: str, managed_sans: Sequence[ElasticSanId]
) -> Any:
    server = grpc.aio.server()
    add_identity_servicer(IdentityServicer(driver_name, azure, list(managed_sans)), server)
    add_controller_servicer(ControllerServicer(azure, subscription_id, managed_sans), server)
    return server


async def serve(server: Any, endpoint: str, stop: asyncio.Event) -> None:
    """Listen on ``endpoint`` until ``stop`` is set, then drain calls in flight and remove the socket."""
    path = socket_path(endpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A socket left by a killed predecessor would make the bind fail.
    path.unlink(missing_ok=True)
    server.add_insecure_port(f"{UNIX_SCHEME}{path}")
    await server.start()
    log.info("serving CSI on %s%s", UNIX_SCHEME, path, extra={"endpoint": str(path)})
    try:
        await stop.wait()
    finally:
        log.info("stopping: letting calls in flight finish for up to %.0fs", GRACE_SECONDS)
        await server.stop(GRACE_SECONDS)
        path.unlink(missing_ok=True)


def stop_on_signals(stop: asyncio.Event, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    loop = asyncio.get_running_loop()
    for signum in signals:
        with contextlib.suppress(NotImplementedError):  # platforms without loop signal handlers
            loop.add_signal_handler(signum, stop.set)


__all__ = ["GRACE_SECONDS", "build_server", "serve", "socket_path", "stop_on_signals"]
