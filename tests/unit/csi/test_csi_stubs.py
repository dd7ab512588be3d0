"""The import-time check of the generated stubs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from elasticsan_snapshotter.csi import _GENERATED, StubsError, _check_stubs

MESSAGE = "CSI stubs missing or stale: run make stubs"


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    copy = tmp_path / "_generated"
    shutil.copytree(_GENERATED, copy)
    return copy


def test_the_generated_stubs_pass(generated: Path) -> None:
    _check_stubs(generated)


def test_missing_stubs_fail_with_one_message(tmp_path: Path) -> None:
    with pytest.raises(StubsError, match=MESSAGE):
        _check_stubs(tmp_path / "nothing")


def test_stubs_from_another_proto_fail(generated: Path) -> None:
    stamp = json.loads((generated / "stamp.json").read_text())
    stamp["proto_sha256"] = "0" * 64
    (generated / "stamp.json").write_text(json.dumps(stamp))
    with pytest.raises(StubsError, match=MESSAGE):
        _check_stubs(generated)


def test_edited_stubs_fail(generated: Path) -> None:
    with (generated / "csi_pb2.py").open("a") as out:
        out.write("\n# edited\n")
    with pytest.raises(StubsError, match=MESSAGE):
        _check_stubs(generated)


def test_a_missing_module_fails(generated: Path) -> None:
    (generated / "csi_pb2_grpc.py").unlink()
    with pytest.raises(StubsError, match=MESSAGE):
        _check_stubs(generated)
