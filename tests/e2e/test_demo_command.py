"""`elasticsan-snapshotter demo`, the README's first command, run as users run it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from elasticsan_snapshotter.demo import STEP_TITLES


def test_demo_runs_every_step_and_cleans_up(tmp_path: Path) -> None:
    go = shutil.which("go")
    assert go is not None, "the demo builds pinned binaries with Go"
    go_bin = str(Path(go).resolve().parent)
    result = subprocess.run(
        [sys.executable, "-m", "elasticsan_snapshotter", "demo", "--timeout", "120"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        # A plain environment, as a person's shell has: Go (for the pinned binaries) and the system.
        env={"PATH": f"{go_bin}:/usr/bin:/bin", "HOME": str(Path.home()), "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    summary = out.split("\nSummary (", 1)[1]
    for title in STEP_TITLES:
        row = next(line for line in summary.splitlines() if line.startswith(title))
        assert re.match(rf"{re.escape(title)}\s+ok\s+\d+\.\ds\s+\S", row), row
    assert re.search(r"^VolumeSnapshot ready\s+ok.*restoreSize 10Gi", summary, re.MULTILINE)
    assert re.search(r"^Restore claim bound\s+ok.*Bound to PV pvc-", summary, re.MULTILINE)
    assert re.search(r"^Export succeeded\s+ok.*Microsoft\.Compute/snapshots/", summary, re.MULTILINE)
    # The file written before the snapshot comes back from the restore, not the changed one.
    [before] = re.findall(
        r"^Write a file into the volume\s+ok.*sha256 ([0-9a-f]{64})$", summary, re.MULTILINE
    )
    [after] = re.findall(r"^Change the file\s+ok.*sha256 ([0-9a-f]{64})$", summary, re.MULTILINE)
    assert before != after
    assert re.search(
        rf"^Restored file is the snapshot's\s+ok.*restored sha256 {before} = at the snapshot; changed since: {after}$",
        summary,
        re.MULTILINE,
    )
    assert "every step passed" in out
    # Progress and timings were printed for every step, and nothing was left behind.
    assert len(re.findall(r"^\s+ok in \d+\.\ds: ", out, re.MULTILINE)) == len(STEP_TITLES)
    assert list(tmp_path.glob("ess-demo-*")) == []
