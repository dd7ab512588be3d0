"""Generate the Python gRPC stubs for CSI from the pinned csi.proto.

The proto comes from the Go module cache (``go mod download`` verifies it against the
checksum database), at the version pinned as CSI_SPEC_VERSION in hack/versions.env.
Nothing generated is committed: the output directory is gitignored. A stamp records
the proto's sha256 and the generator's version, so an unchanged input is not
regenerated, and the csi package refuses to import stubs that do not match it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE_ROOT = ROOT / "operator"
PACKAGE_DIR = Path("elasticsan_snapshotter", "csi", "_generated")
OUT_DIR = SOURCE_ROOT / PACKAGE_DIR
STAMP = OUT_DIR / "stamp.json"
PIN_FILE = SOURCE_ROOT / "elasticsan_snapshotter" / "csi" / "_pin.py"
SPEC_MODULE = "github.com/container-storage-interface/spec"
OUTPUTS = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


def _load(name: str, path: Path) -> ModuleType:
    # Loaded by path: importing the csi package would run the very check this script satisfies.
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def pinned_proto() -> tuple[str, Path]:
    build = _load("build_binaries", HERE / "build_binaries.py")
    version = build.read_versions()["CSI_SPEC_VERSION"]
    with tempfile.TemporaryDirectory() as scratch:
        info = build.module_info(SPEC_MODULE, version, Path(scratch))
    return version, Path(info["Dir"]) / "csi.proto"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wanted_stamp(version: str, proto_sha: str) -> dict[str, str]:
    return {
        "csi_spec_version": version,
        "proto_sha256": proto_sha,
        "grpcio_tools": importlib.metadata.version("grpcio-tools"),
    }


def up_to_date(wanted: dict[str, str], out_dir: Path = OUT_DIR, outputs: tuple[str, ...] = OUTPUTS) -> bool:
    try:
        stamp = json.loads((out_dir / STAMP.name).read_text())
    except (OSError, ValueError):
        return False
    if {k: stamp.get(k) for k in wanted} != wanted:
        return False
    files = stamp.get("files", {})
    return all((out_dir / name).is_file() and sha256(out_dir / name) == files.get(name) for name in outputs)


def generate(
    proto: Path,
    wanted: dict[str, str],
    package_dir: Path = PACKAGE_DIR,
    outputs: tuple[str, ...] = OUTPUTS,
) -> None:
    """Run protoc on ``proto`` as if it lived in ``package_dir`` and copy ``outputs`` there."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        # The proto's path below the include root becomes the import path of the generated modules.
        include = Path(tmp, "in")
        staged = include / package_dir / proto.name
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto, staged)
        out = Path(tmp, "out")
        out.mkdir()
        builtin = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{include}",
                f"-I{builtin}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--pyi_out={out}",
                str(staged),
            ]
        )
        if status != 0:
            raise SystemExit(f"error: protoc failed with status {status} on {proto}")
        out_dir = SOURCE_ROOT / package_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in outputs:
            shutil.copyfile(out / package_dir / name, out_dir / name)
    (out_dir / "__init__.py").write_text(f'"""Generated from {proto.name} by hack/ at build time."""\n')
    stamp = {**wanted, "files": {name: sha256(out_dir / name) for name in outputs}}
    (out_dir / STAMP.name).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")


def main() -> int:
    try:
        version, proto = pinned_proto()
    except Exception as exc:  # the build script's BuildError: no Go, no network, bad checksum
        print(f"error: cannot fetch the pinned csi.proto: {exc}", file=sys.stderr)
        return 1
    proto_sha = sha256(proto)
    pin = _load("csi_pin", PIN_FILE)
    if proto_sha != pin.PROTO_SHA256 or version != pin.CSI_SPEC_VERSION:
        print(
            f"error: csi.proto {version} (sha256 {proto_sha}) is not the one the csi package is written "
            f"for ({pin.CSI_SPEC_VERSION}, sha256 {pin.PROTO_SHA256}); update {PIN_FILE.relative_to(ROOT)} "
            "together with the code that uses the stubs",
            file=sys.stderr,
        )
        return 1
    wanted = wanted_stamp(version, proto_sha)
    if up_to_date(wanted):
        print(f"CSI stubs up to date ({version})", file=sys.stderr)
        return 0
    generate(proto, wanted)
    print(f"CSI stubs generated from {proto} into {OUT_DIR.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
