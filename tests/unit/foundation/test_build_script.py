"""Failures of the binary build script end in one clear line and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "hack" / "build_binaries.py"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


def test_missing_go_toolchain_is_named(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = run([], env)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert "Go toolchain ('go') is not on PATH" in line


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain to reach the module proxy")
def test_module_that_cannot_be_downloaded_is_named(tmp_path: Path) -> None:
    versions = tmp_path / "versions.env"
    text = (REPO_ROOT / "hack" / "versions.env").read_text()
    versions.write_text(text.replace("HELM_VERSION=", "HELM_VERSION=v3.0.0-no-such-version #"))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = run(["--versions", str(versions), "--only", "helm"], env)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert "helm.sh/helm/v3@v3.0.0-no-such-version" in line


def test_malformed_versions_file_is_named(tmp_path: Path) -> None:
    versions = tmp_path / "versions.env"
    versions.write_text("KUBERNETES_VERSION v1.36.3\n")
    proc = run(["--versions", str(versions)], dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert "malformed line" in line
