"""The node agent's process: thaw what a previous run left frozen, then serve until told to stop.

On a stop signal it thaws every lease before it exits, as the preStop hook asks it to; if it
dies instead, the next start thaws from the journal before it accepts any call.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.freeze import MAX_TTL_SECONDS
from elasticsan_snapshotter.freeze._stubs import LocalStub, add_agent_servicer, add_local_servicer, pb
from elasticsan_snapshotter.freeze.journal import Journal
from elasticsan_snapshotter.freeze.leases import LeaseBook
from elasticsan_snapshotter.freeze.mounts import MountResolver
from elasticsan_snapshotter.freeze.service import AgentServicer, LocalServicer
from elasticsan_snapshotter.freeze.tls import CLIENT_NAME, TlsFiles, server_credentials

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
RETRY_SECONDS = 5.0
"""How often a thaw that failed is tried again."""
DEFAULT_KEEP_RESULTS = 3600.0


@dataclass(frozen=True)
class AgentConfig:
    listen: str
    """host:port of the mutual-TLS listener."""
    node_name: str
    kubelet_root: Path
    state_dir: Path
    local_socket: Path
    tls: TlsFiles
    client_name: str = CLIENT_NAME
    host_root: Path = Path("/")
    max_ttl: float = MAX_TTL_SECONDS
    keep_results: float = DEFAULT_KEEP_RESULTS


def build_book(config: AgentConfig) -> LeaseBook:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    resolver = MountResolver(config.kubelet_root, (config.host_root, config.state_dir))
    return LeaseBook(
        resolver,
        Journal(config.state_dir),
        node_name=config.node_name,
        max_ttl=config.max_ttl,
        keep_results=config.keep_results,
    )


async def run(config: AgentConfig, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    book = build_book(config)
    await book.recover()  # before serving: nothing from a previous run stays frozen
    server = grpc.aio.server()
    add_agent_servicer(AgentServicer(book, config.client_name, config.keep_results), server)
    port = server.add_secure_port(config.listen, server_credentials(config.tls))
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    local = grpc.aio.server()
    add_local_servicer(LocalServicer(book), local)
    config.local_socket.parent.mkdir(parents=True, exist_ok=True)
    config.local_socket.unlink(missing_ok=True)
    local.add_insecure_port(f"unix://{config.local_socket}")
    await server.start()
    await local.start()
    os.chmod(config.local_socket, 0o600)
    log.info(
        "freeze agent serving on %s (boot %s)",
        config.listen,
        book.boot_id,
        extra={"node": config.node_name, "boot_id": book.boot_id},
    )
    metrics.FREEZE_OVERDUE_SECONDS.set_function(book.overdue_seconds)
    retry = asyncio.create_task(_retry_thaws(book))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        retry.cancel()
        thawed = await book.thaw_all()
        if thawed:
            log.warning("stopping: thawed leases %s", ", ".join(thawed))
        await asyncio.gather(server.stop(GRACE_SECONDS), local.stop(GRACE_SECONDS))
        config.local_socket.unlink(missing_ok=True)


async def _retry_thaws(book: LeaseBook) -> None:
    while True:
        await asyncio.sleep(RETRY_SECONDS)
        await book.retry_unthawed()


async def thaw_all_through(local_socket: Path) -> list[str]:
    """What the preStop hook runs: ask the running agent to thaw every lease now."""
    async with grpc.aio.insecure_channel(f"unix://{local_socket}") as channel:
        stub: Any = LocalStub(channel)
        response = await stub.ThawAll(pb.ThawAllRequest(), timeout=30)
        return list(response.thawed_lease_ids)


__all__ = ["DEFAULT_KEEP_RESULTS", "AgentConfig", "build_book", "run", "thaw_all_through"]
