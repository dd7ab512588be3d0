"""Where the node stand-in cannot run, the demo says why on the file steps and goes on with the rest."""

from __future__ import annotations

import io
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from elasticsan_snapshotter import demo
from elasticsan_snapshotter.local_cluster import node


def test_file_steps_are_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    out = io.StringIO()
    steps = demo.Steps(demo.Progress(out), total=2)
    walk: Any = object()
    ran: list[str] = []
    with ExitStack() as stack:
        files = demo.DemoFiles(walk, admin=None, kubelet_root=tmp_path, stack=stack)
        files.step(steps, "Write a file into the volume", lambda: ran.append("write") or "")
        with steps.step("Something else") as detail:
            detail.append("done")
    assert ran == []
    assert [(r.title, r.outcome) for r in steps.results] == [
        ("Write a file into the volume", "skipped"),
        ("Something else", "ok"),
    ]
    assert "SKIPPED: the node stand-in needs root" in out.getvalue()
