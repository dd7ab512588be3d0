"""The node stand-in for tests: skipped where the machine cannot run it (failing under CI=true), and
checked afterwards for anything it left attached or mounted."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from elasticsan_snapshotter.emulator.process import AdminClient
from elasticsan_snapshotter.local_cluster.node import NodeStandIn, unavailable


def require(reason: str | None) -> None:
    """Skip with ``reason`` where a capability is missing; under CI=true, fail instead."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the data tests: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def checked_node(admin: AdminClient | None, kubelet_root: Path) -> Iterator[NodeStandIn]:
    """A node stand-in; whatever it attached or mounted must be gone afterwards, pass or fail."""
    require(unavailable())
    stand_in = NodeStandIn(admin, kubelet_root)
    try:
        yield stand_in
    finally:
        try:
            stand_in.close()
        finally:
            leaked = stand_in.leftovers()
            assert leaked == [], f"the node stand-in leaked: {leaked}"
