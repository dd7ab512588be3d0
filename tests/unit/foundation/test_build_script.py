"""Failures of the binary build script end in one clear line and a non-zero exit."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("build_binaries", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_binaries"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_velero_is_built_only_when_asked_for() -> None:
    script = _script()
    comps = script.components(script.read_versions())
    by_key = {c.key: c for c in comps}

    default = {c.key for c in comps if script.wanted(c, None, False)}
    assert "velero" not in default
    assert "velero-plugin-for-aws" not in default
    assert {"kubernetes", "etcd", "external-snapshotter"} <= default

    asked = {c.key for c in comps if script.wanted(c, {"velero", "velero-plugin-for-aws"}, False)}
    assert asked == {"velero", "velero-plugin-for-aws"}
    assert {c.key for c in comps if script.wanted(c, None, True)} == set(by_key)

    # Velero's go.mod replaces kopia: it is built as the main module, with its own go.sum.
    assert by_key["velero"].main_module
    assert by_key["velero"].packages == {"velero": "./cmd/velero"}
    assert by_key["velero"].version == script.read_versions()["VELERO_VERSION"]
