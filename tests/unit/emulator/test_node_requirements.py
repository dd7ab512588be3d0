"""Where the node stand-in cannot run, data tests say why in one line: a skip, or under CI a failure."""

from __future__ import annotations

import pytest

from elasticsan_snapshotter.local_cluster import node
from node_support import require


def test_without_root_the_reason_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    reason = node.unavailable()
    assert reason is not None
    assert "root" in reason
    assert "\n" not in reason
    assert node.reflink_unavailable() == reason


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        node.shutil, "which", lambda tool, path=None: None if tool in ("losetup", "mkfs.xfs") else tool
    )
    assert node.unavailable() == "the node stand-in needs losetup on PATH"


def test_a_missing_capability_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no loop devices"):
        require("no loop devices")


def test_a_missing_capability_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no loop devices"):
        require("no loop devices")
    require(None)  # nothing missing: nothing happens
