"""The check every package with generated gRPC stubs runs on import: made from the proto it expects.

hack/generate_csi_stubs.py and hack/generate_freeze_stubs.py write a stamp beside the stubs
with the proto's sha256 and each output's; a missing or stale generation then fails on import
with one message instead of somewhere deep in a servicer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path


class StubsError(ImportError):
    """Generated stubs are missing, or were not generated from the expected proto."""


def check_stubs(directory: Path, files: Iterable[str], proto_sha256: str, what: str) -> None:
    message = f"{what} missing or stale: run make stubs"
    try:
        stamp = json.loads((directory / "stamp.json").read_text())
        if stamp["proto_sha256"] != proto_sha256:
            raise StubsError(message)
        for name in files:
            if hashlib.sha256((directory / name).read_bytes()).hexdigest() != stamp["files"][name]:
                raise StubsError(message)
    except (OSError, ValueError, KeyError, TypeError):
        raise StubsError(message) from None


__all__ = ["StubsError", "check_stubs"]
