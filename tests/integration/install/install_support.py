"""Shared pieces of the install tests: paths, and the pinned helm and kubectl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "elasticsan-snapshotter"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = self.helm if tool == "helm" else self.kubectl
        proc = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc
