"""The freeze package refuses stubs not generated from the freeze.proto beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from elasticsan_snapshotter.freeze import _GENERATED, _HERE, StubsError, _check_stubs

pytestmark = pytest.mark.unit


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    generated = tmp_path / "generated"
    shutil.copytree(_GENERATED, generated)
    proto = tmp_path / "freeze.proto"
    shutil.copyfile(_HERE / "freeze.proto", proto)
    return generated, proto


def test_stubs_generated_from_this_proto_pass(copies: tuple[Path, Path]) -> None:
    _check_stubs(*copies)


def test_a_changed_proto_makes_the_stubs_stale(copies: tuple[Path, Path]) -> None:
    generated, proto = copies
    proto.write_text(proto.read_text() + "\nmessage Added {}\n")
    with pytest.raises(StubsError, match="freeze agent stubs missing or stale: run make stubs"):
        _check_stubs(generated, proto)


def test_an_edited_stub_or_a_missing_one_is_refused(copies: tuple[Path, Path]) -> None:
    generated, proto = copies
    (generated / "freeze_pb2.py").write_text("# edited\n")
    with pytest.raises(StubsError):
        _check_stubs(generated, proto)
    with pytest.raises(StubsError):
        _check_stubs(generated.parent / "nothing", proto)
