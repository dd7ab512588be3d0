"""The CSI Identity and Controller services over gRPC (``elasticsan-snapshotter csi-controller``).

The gRPC stubs are generated at build time from the pinned csi.proto (``make stubs``)
and never committed. Importing this package checks them first, so a missing or
stale generation fails here with one message instead of somewhere deep in a servicer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from elasticsan_snapshotter.csi._pin import PROTO_SHA256

_GENERATED = Path(__file__).resolve().parent / "_generated"
_FILES = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


class StubsError(ImportError):
    """The generated CSI stubs are missing, or were not generated from the pinned csi.proto."""


def _check_stubs(directory: Path = _GENERATED) -> None:
    message = "CSI stubs missing or stale: run make stubs"
    try:
        stamp = json.loads((directory / "stamp.json").read_text())
        if stamp["proto_sha256"] != PROTO_SHA256:
            raise StubsError(message)
        for name in _FILES:
            if hashlib.sha256((directory / name).read_bytes()).hexdigest() != stamp["files"][name]:
                raise StubsError(message)
    except (OSError, ValueError, KeyError, TypeError):
        raise StubsError(message) from None


_check_stubs()
