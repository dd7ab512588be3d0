"""The CSI Identity and Controller services over gRPC (``elasticsan-snapshotter csi-controller``).

The gRPC stubs are generated at build time from the pinned csi.proto (``make stubs``)
and never committed. Importing this package checks them first, so a missing or
stale generation fails here with one message instead of somewhere deep in a servicer.
"""

from __future__ import annotations

from pathlib import Path

from elasticsan_snapshotter.csi._pin import PROTO_SHA256
from elasticsan_snapshotter.stub_stamp import StubsError, check_stubs

_GENERATED = Path(__file__).resolve().parent / "_generated"
_FILES = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


def _check_stubs(directory: Path = _GENERATED) -> None:
    check_stubs(directory, _FILES, PROTO_SHA256, "CSI stubs")


_check_stubs()

__all__ = ["StubsError"]
