"""The freeze agent: file-system freezes on a node, held as leases, served over gRPC with mutual TLS.

``elasticsan-snapshotter freeze-agent`` runs the node side (``agent``); the operator talks to
it through ``client``. The gRPC stubs are generated at build time from ``freeze.proto``
beside this file (``make stubs``) and never committed; importing this package checks that
they were generated from that very proto.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_GENERATED = _HERE / "_generated"
_FILES = ("freeze_pb2.py", "freeze_pb2.pyi", "freeze_pb2_grpc.py")


class StubsError(ImportError):
    """The generated freeze stubs are missing, or were not generated from freeze.proto."""


def _check_stubs(directory: Path = _GENERATED, proto: Path = _HERE / "freeze.proto") -> None:
    message = "freeze agent stubs missing or stale: run make stubs"
    try:
        stamp = json.loads((directory / "stamp.json").read_text())
        if stamp["proto_sha256"] != hashlib.sha256(proto.read_bytes()).hexdigest():
            raise StubsError(message)
        for name in _FILES:
            if hashlib.sha256((directory / name).read_bytes()).hexdigest() != stamp["files"][name]:
                raise StubsError(message)
    except (OSError, ValueError, KeyError, TypeError):
        raise StubsError(message) from None


_check_stubs()
