"""The freeze agent: file-system freezes on a node, held as leases, served over gRPC with mutual TLS.

``elasticsan-snapshotter freeze-agent`` runs the node side (``agent``); the operator talks to
it through ``client``. The gRPC stubs are generated at build time from ``freeze.proto``
beside this file (``make stubs``) and never committed; importing this package checks that
they were generated from that very proto.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from elasticsan_snapshotter.stub_stamp import StubsError, check_stubs

_HERE = Path(__file__).resolve().parent
_GENERATED = _HERE / "_generated"
_FILES = ("freeze_pb2.py", "freeze_pb2.pyi", "freeze_pb2_grpc.py")


def _check_stubs(directory: Path = _GENERATED, proto: Path = _HERE / "freeze.proto") -> None:
    try:
        proto_sha256 = hashlib.sha256(proto.read_bytes()).hexdigest()
    except OSError:
        raise StubsError("freeze.proto is missing beside the freeze package") from None
    check_stubs(directory, _FILES, proto_sha256, "freeze agent stubs")


_check_stubs()

__all__ = ["StubsError"]
