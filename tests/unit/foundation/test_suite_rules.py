"""The suite's own rules, checked by running pytest with the project's configuration on small test files:
a misspelt marker is an error, a warning fails its test, a missing capability skips (fails under CI=true), and no two test modules share a basename."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

SAMPLES = {
    "test_marker.py": "import pytest\n\n@pytest.mark.unti\ndef test_misspelt() -> None:\n    pass\n",
    "test_rules.py": (
        "import warnings\n"
        "from capabilities import missing\n\n"
        "def test_warns() -> None:\n    warnings.warn('old', DeprecationWarning)\n\n"
        "def test_needs_something() -> None:\n    missing('no such device')\n"
    ),
}


def run_samples(tmp_path: Path, **env: str) -> str:
    for name, text in SAMPLES.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO_ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-rA",
            "--continue-on-collection-errors",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests"), "CI": "", **env},
    )
    assert proc.returncode != 0
    return proc.stdout


def test_misspelt_marker_is_an_error_and_a_warning_fails(tmp_path: Path) -> None:
    out = run_samples(tmp_path)
    assert "'unti' not found in `markers` configuration option" in out
    assert "FAILED test_rules.py::test_warns - DeprecationWarning: old" in out
    assert "SKIPPED [1] " in out
    assert ": no such device" in out


def test_a_missing_capability_fails_under_ci(tmp_path: Path) -> None:
    out = run_samples(tmp_path, CI="true")
    assert "FAILED test_rules.py::test_needs_something - Failed: no such device (CI=true" in out
    assert "SKIPPED" not in out


def test_every_test_module_has_a_basename_of_its_own() -> None:
    # The test folders are not packages: two modules with one basename stop the whole suite's collection.
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO_ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(REPO_ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
