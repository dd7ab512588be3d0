"""Generate the Python gRPC stubs of the freeze agent from our own freeze.proto.

The proto is committed beside the code (``operator/elasticsan_snapshotter/freeze/freeze.proto``);
what protoc makes of it is not: the output directory is gitignored. A stamp records the
proto's sha256 and the generator's version, so an unchanged input is not regenerated, and the
freeze package refuses to import stubs that do not match the proto next to it. The protoc
steps are those of hack/generate_csi_stubs.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = Path("elasticsan_snapshotter", "freeze", "_generated")
OUTPUTS = ("freeze_pb2.py", "freeze_pb2.pyi", "freeze_pb2_grpc.py")


def main() -> int:
    spec = importlib.util.spec_from_file_location("generate_csi_stubs", HERE / "generate_csi_stubs.py")
    assert spec is not None
    assert spec.loader is not None
    protoc_steps = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = protoc_steps
    spec.loader.exec_module(protoc_steps)

    proto = protoc_steps.SOURCE_ROOT / "elasticsan_snapshotter" / "freeze" / "freeze.proto"
    out_dir = protoc_steps.SOURCE_ROOT / PACKAGE_DIR
    wanted = {
        "proto_sha256": protoc_steps.sha256(proto),
        "grpcio_tools": protoc_steps.importlib.metadata.version("grpcio-tools"),
    }
    if protoc_steps.up_to_date(wanted, out_dir, OUTPUTS):
        print("freeze agent stubs up to date", file=sys.stderr)
        return 0
    protoc_steps.generate(proto, wanted, PACKAGE_DIR, OUTPUTS)
    print(f"freeze agent stubs generated into {out_dir.relative_to(protoc_steps.ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
