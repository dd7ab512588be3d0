"""The source root must never shadow the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_stdlib_operator_is_not_shadowed_by_the_source_root() -> None:
    # Run in a fresh interpreter whose path starts with the source root itself,
    # the worst case: `operator` must still be the standard library module.
    code = (
        "import elasticsan_snapshotter, operator, sys;"
        "print(operator.__file__);"
        "print(operator.itemgetter(1)([0, 42]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "operator") + ":" + str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, value = proc.stdout.split()
    assert Path(module_file).resolve().parent == Path(subprocess.__file__).resolve().parent
    assert value == "42"


def test_source_root_is_not_a_package() -> None:
    assert not (REPO_ROOT / "operator" / "__init__.py").exists()


def test_cli_reports_its_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "elasticsan_snapshotter", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    from elasticsan_snapshotter import __version__

    assert proc.stdout.strip() == f"elasticsan-snapshotter {__version__}"
