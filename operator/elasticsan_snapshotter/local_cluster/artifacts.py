"""Where the pinned upstream binaries and files are.

They are built (once, then cached by version) by ``hack/build_binaries.py``;
this module runs that script from a source checkout, or reads the JSON it
printed from the file named by ``ELASTICSAN_SNAPSHOTTER_ARTIFACTS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARTIFACTS_ENV = "ELASTICSAN_SNAPSHOTTER_ARTIFACTS"
REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build_binaries.py"


class ArtifactsError(Exception):
    """The binaries could not be found or built; the message is one line for the user."""


@dataclass(frozen=True)
class Artifacts:
    binaries: dict[str, Path]
    versions: dict[str, str]
    snapshot_crds: Path
    csi_proto: Path

    def binary(self, name: str) -> Path:
        try:
            return self.binaries[name]
        except KeyError:
            raise ArtifactsError(f"binary {name!r} is not among the built artifacts") from None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifacts:
        binaries = {str(k): Path(str(v)) for k, v in data["binaries"].items()}
        versions = {str(k): str(v) for k, v in data["versions"].items()}
        return cls(binaries, versions, Path(str(data["snapshot_crds"])), Path(str(data["csi_proto"])))


def discover(only: Sequence[str] = ()) -> Artifacts:
    """Build what is missing (a no-op when the cache is warm) and return the paths.

    ``only`` names binaries whose components alone are built, optional ones (Velero) included.
    """
    listed = os.environ.get(ARTIFACTS_ENV)
    if listed:
        return Artifacts.from_json(json.loads(Path(listed).read_text()))
    if not BUILD_SCRIPT.exists():
        raise ArtifactsError(
            f"{BUILD_SCRIPT} not found: run from a source checkout, or set {ARTIFACTS_ENV} "
            "to a JSON file printed by 'hack/build_binaries.py --json'"
        )
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--json", *(f"--only={name}" for name in only)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        raise ArtifactsError(errors[-1] if errors else proc.stderr.strip().splitlines()[-1])
    return Artifacts.from_json(json.loads(proc.stdout))
