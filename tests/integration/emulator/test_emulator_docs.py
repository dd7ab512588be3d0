"""The walkthrough script in docs/emulator.md runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "emulator.md"


def test_az_like_walkthrough_runs(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A snapshot in az-like steps") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    script = tmp_path / "walkthrough.py"
    script.write_text(match.group(1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "iSCSI target: iqn." in result.stdout
    assert "/snapshots/snap1 " in result.stdout
    assert "export: Succeeded" in result.stdout
