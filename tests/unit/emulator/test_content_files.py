"""The emulator's content files: sparse creation, hole-keeping copies, measured change, cleanup."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from elasticsan_snapshotter.emulator.contents import (
    BLOCK,
    GIB,
    Contents,
    adopt_contents,
    changed_bytes,
    copy_sparse,
    data_extents,
)
from elasticsan_snapshotter.emulator.resources import DISK_SNAPSHOTS, VOLUME_SNAPSHOTS, VOLUMES
from elasticsan_snapshotter.emulator.state import Store

MIB = 1024**2


def _write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _digest(path: Path) -> str:
    """A digest of the data extents and where they are (holes read as zeros)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for start, end in data_extents(handle.fileno(), os.fstat(handle.fileno()).st_size):
            digest.update(f"{start}:".encode() + os.pread(handle.fileno(), end - start, start))
    return digest.hexdigest()


def _head(path: Path, length: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(length)


def test_a_new_file_has_its_size_and_costs_nothing(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    key = contents.create(100 * GIB)
    assert contents.path(key).stat().st_size == 100 * GIB
    assert contents.allocated_bytes(key) == 0


def test_a_copy_keeps_data_and_holes(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    key = contents.create(100 * GIB)
    pieces = {0: os.urandom(MIB), 37 * GIB: os.urandom(49 * MIB), 100 * GIB - MIB: os.urandom(MIB)}
    for offset, data in pieces.items():
        _write(contents.path(key), offset, data)

    copy = contents.clone(key, 0)
    path = contents.path(copy)
    assert path.stat().st_size == 100 * GIB
    with open(path, "rb") as handle, open(contents.path(key), "rb") as original:
        for offset, data in pieces.items():
            handle.seek(offset)
            assert handle.read(len(data)) == data
        # Only the 51 MiB written were copied; the rest is still a hole.
        copied = list(data_extents(handle.fileno(), 100 * GIB))
        assert copied == list(data_extents(original.fileno(), 100 * GIB))
    assert contents.allocated_bytes(copy) <= 52 * MIB
    assert changed_bytes(contents.path(key), path) == 0


def test_a_larger_clone_keeps_the_data_and_has_the_larger_size(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    key = contents.create(GIB)
    _write(contents.path(key), 5 * MIB, b"hello" * 1000)
    before = _digest(contents.path(key))
    larger = contents.clone(key, 3 * GIB)
    assert contents.path(larger).stat().st_size == 3 * GIB
    with open(contents.path(larger), "rb") as handle:
        handle.seek(5 * MIB)
        assert handle.read(5000) == b"hello" * 1000
    assert _digest(contents.path(key)) == before  # the source is untouched


def test_copy_sparse_of_an_empty_file(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(b"")
    copy_sparse(source, target)
    assert target.read_bytes() == b""


def test_changed_bytes_counts_whole_differing_blocks(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    base = contents.create(GIB)
    _write(contents.path(base), 0, os.urandom(4 * MIB))
    changed = contents.clone(base, 0)
    _write(contents.path(changed), 10, b"x")  # one block
    _write(contents.path(changed), MIB - 1, b"yz")  # straddles two blocks
    _write(contents.path(changed), 512 * MIB, b"\0" * BLOCK)  # zeros over a hole: no change
    _write(contents.path(changed), 700 * MIB, b"q" * (3 * BLOCK))  # three blocks in a hole
    assert contents.changed_bytes(changed, base) == 6 * BLOCK
    assert contents.changed_bytes(base, changed) == 6 * BLOCK
    assert contents.changed_bytes(base, base) == 0


def test_changed_bytes_across_sizes(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"a" * BLOCK)
    large.write_bytes(b"a" * BLOCK + b"b" * (2 * BLOCK))
    assert changed_bytes(small, large) == 2 * BLOCK


def test_growing_keeps_the_data(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    key = contents.create(GIB)
    _write(contents.path(key), 0, b"data")
    contents.grow(key, 2 * GIB)
    contents.grow(key, GIB)  # never shrinks
    assert contents.path(key).stat().st_size == 2 * GIB
    assert _head(contents.path(key), 4) == b"data"


def test_collect_removes_unreferenced_files(tmp_path: Path) -> None:
    contents = Contents(tmp_path)
    keep, lost = contents.create(GIB), contents.create(GIB)
    assert contents.collect([keep]) == 1
    assert contents.exists(keep)
    assert not contents.exists(lost)
    contents.delete(keep)
    assert list(contents.root.iterdir()) == []


def test_adopting_state_gives_every_resource_a_file_and_frees_it_on_removal(tmp_path: Path) -> None:
    store, contents = Store(tmp_path), Contents(tmp_path)
    kept = contents.create(GIB)
    orphan = contents.create(GIB)
    volume = {"id": "/v", "kind": VOLUMES, "props": {"sizeGiB": 2}}  # from before contents existed
    snapshot = {"id": "/s", "kind": VOLUME_SNAPSHOTS, "source_size_gib": 1, "content": kept}
    disk = {"id": "/d", "kind": DISK_SNAPSHOTS, "disk_size_gb": 3, "content": "gone"}  # its file was lost
    for record in (volume, snapshot, disk):
        store.put(record)
    adopt_contents(store, contents)
    assert contents.path(volume["content"]).stat().st_size == 2 * GIB
    assert snapshot["content"] == kept
    assert contents.path(disk["content"]).stat().st_size == 3 * GIB
    assert not contents.exists(orphan)
    store.remove("/s")
    assert not contents.exists(kept)
    assert sorted(p.stem for p in contents.root.iterdir()) == sorted([volume["content"], disk["content"]])
