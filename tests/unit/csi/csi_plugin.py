"""Shared pieces of the CSI unit tests: a real grpc.aio server on a temporary unix socket."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.csi._stubs import pb_grpc
from elasticsan_snapshotter.csi.server import build_server, serve
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeGroupId

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
SAN = ElasticSanId(SUBSCRIPTION, "rg", "san1")
GROUP = VolumeGroupId(SAN, "vg1")
DRIVER = "csi.unit.elasticsan.snapshotter.dev"


@dataclass
class Plugin:
    azure: InMemoryAzure
    identity: Any
    controller: Any
    socket: Path


def seeded(fake: InMemoryAzure) -> InMemoryAzure:
    fake.add_elastic_san(SAN, base_size_tib=2)
    fake.add_volume_group(GROUP)
    return fake


@asynccontextmanager
async def running(azure: InMemoryAzure) -> AsyncIterator[Plugin]:
    # Unix socket paths are limited to ~107 bytes, so not under pytest's long tmp_path.
    workdir = Path(tempfile.mkdtemp(prefix="csi-", dir="/tmp"))
    socket = workdir / "csi.sock"
    server = build_server(azure, driver_name=DRIVER, subscription_id=SUBSCRIPTION, managed_sans=[SAN])
    stop = asyncio.Event()
    task = asyncio.create_task(serve(server, f"unix://{socket}", stop))
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield Plugin(azure, pb_grpc.IdentityStub(channel), pb_grpc.ControllerStub(channel), socket)
    finally:
        await channel.close()
        stop.set()
        await task
        shutil.rmtree(workdir, ignore_errors=True)
