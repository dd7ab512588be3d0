from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import pytest
from csi_plugin import running

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.cli import build_parser
from elasticsan_snapshotter.csi._stubs import pb
from elasticsan_snapshotter.csi.server import socket_path, stop_on_signals


def test_socket_path_accepts_the_sidecar_forms() -> None:
    assert socket_path("unix:///csi/csi.sock") == Path("/csi/csi.sock")
    assert socket_path("/run/csi.sock") == Path("/run/csi.sock")
    with pytest.raises(ValueError, match="absolute"):
        socket_path("unix://relative/csi.sock")


def test_the_subcommand_takes_an_endpoint_and_the_settings_flags() -> None:
    args = build_parser().parse_args(
        ["csi-controller", "--endpoint", "unix:///tmp/x.sock", "--driver-name", "csi.example.dev"]
    )
    assert isinstance(args, argparse.Namespace)
    assert args.endpoint == "unix:///tmp/x.sock"
    assert args.driver_name == "csi.example.dev"
    assert callable(args.func)


async def test_sigterm_sets_the_stop_event() -> None:
    stop = asyncio.Event()
    stop_on_signals(stop, (signal.SIGUSR1,))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(stop.wait(), timeout=5)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)


async def test_the_socket_is_removed_after_a_graceful_stop(azure: InMemoryAzure) -> None:
    async with running(azure) as plugin:
        assert plugin.socket.exists()
        assert (await plugin.identity.GetPluginInfo(pb.GetPluginInfoRequest())).name
    assert not plugin.socket.exists()
