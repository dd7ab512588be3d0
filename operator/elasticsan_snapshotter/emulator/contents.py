"""What volumes and snapshots hold: one sparse file each, under ``<state dir>/contents/``.

A file is created at its resource's declared size as a hole, so a 100 GiB volume costs only
the blocks written to it. Copies keep holes: a reflink (``FICLONE``) where the file system
offers one (XFS, Btrfs), otherwise only the data extents (``SEEK_DATA``/``SEEK_HOLE``) are
copied, in the kernel (``copy_file_range``). A reflink is atomic against concurrent writes
(the file system locks the file), so a volume being written is captured at one instant; an
extent copy is not. Capacity accounting compares two files block by block over their data
extents, so a snapshot's incremental cost is what really changed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from elasticsan_snapshotter.emulator.resources import DISK_SNAPSHOTS, VOLUME_SNAPSHOTS, VOLUMES
from elasticsan_snapshotter.emulator.state import Record, Store

GIB = 1024**3
BLOCK = 4096
_CHUNK = 1024**2
_FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EBADF, errno.EPERM})
_SUFFIX = ".img"


class Contents:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "contents"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / f"{key}{_SUFFIX}"

    def create(self, size_bytes: int) -> str:
        """A new, empty (all-zero, unallocated) file of ``size_bytes``."""
        key = uuid.uuid4().hex
        with open(self.path(key), "xb") as handle:
            handle.truncate(size_bytes)
        return key

    def clone(self, source: str, size_bytes: int) -> str:
        """A copy of ``source`` as it is now, at least ``size_bytes`` long (a larger target keeps the data)."""
        key = uuid.uuid4().hex
        copy_sparse(self.path(source), self.path(key))
        self.grow(key, size_bytes)
        return key

    def grow(self, key: str, size_bytes: int) -> None:
        path = self.path(key)
        if path.stat().st_size < size_bytes:
            os.truncate(path, size_bytes)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def collect(self, keep: Iterable[str]) -> int:
        """Remove files no resource refers to (left by a crash between a change and its save)."""
        wanted = set(keep)
        removed = 0
        for entry in self.root.iterdir():
            if entry.suffix == _SUFFIX and entry.stem not in wanted:
                entry.unlink(missing_ok=True)
                removed += 1
            elif entry.suffix == ".part":
                entry.unlink(missing_ok=True)
        return removed

    def changed_bytes(self, key: str, base: str) -> int:
        """Bytes (in whole 4 KiB blocks) that differ between ``key`` and ``base``."""
        return changed_bytes(self.path(key), self.path(base))

    def allocated_bytes(self, key: str) -> int:
        return self.path(key).stat().st_blocks * 512


def _declared_bytes(record: Record) -> int:
    if record["kind"] == VOLUMES:
        return int(record["props"]["sizeGiB"]) * GIB
    if record["kind"] == VOLUME_SNAPSHOTS:
        return int(record["source_size_gib"]) * GIB
    return int(record["disk_size_gb"]) * GIB


def adopt_contents(store: Store, contents: Contents) -> None:
    """Tie files to the loaded state: each resource has its file, and a removed one frees it."""
    for record in store.resources.values():
        if record["kind"] not in (VOLUMES, VOLUME_SNAPSHOTS, DISK_SNAPSHOTS):
            continue
        if record.get("content") is None or not contents.exists(record["content"]):
            # State from before contents existed, or a crash between a delete and its save.
            record["content"] = contents.create(_declared_bytes(record))
            store.mark_dirty()
    contents.collect(r["content"] for r in store.resources.values() if r.get("content"))

    def free(record: Record) -> None:
        if record.get("content"):
            contents.delete(record["content"])

    store.on_remove.append(free)


def copy_sparse(source: Path, target: Path) -> bool:
    """Copy ``source`` to a new file ``target``, holes kept; True when it was a reflink."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        if _reflink(src.fileno(), dst.fileno()):
            return True
        dst.truncate(size)
        for start, end in data_extents(src.fileno(), size):
            _copy_range(src.fileno(), dst.fileno(), start, end - start)
        return False


def _reflink(src: int, dst: int) -> bool:
    try:
        fcntl.ioctl(dst, _FICLONE, src)
    except OSError as error:
        if error.errno in _NO_REFLINK:
            return False
        raise
    return True


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    done = 0
    while done < length:
        try:
            copied = os.copy_file_range(src, dst, length - done, offset + done, offset + done)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            copied = _copy_plain(src, dst, offset + done, min(_CHUNK, length - done))
        if copied == 0:  # the source shrank under us; what is left reads as zeros
            return
        done += copied


def _copy_plain(src: int, dst: int, offset: int, length: int) -> int:
    data = os.pread(src, length, offset)
    os.pwrite(dst, data, offset)
    return len(data)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` ranges of ``fd`` that hold data; everything else is a hole."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no data after offset
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            yield start, end
        offset = end


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def changed_bytes(first: Path, second: Path) -> int:
    """Bytes, in whole blocks, where the two files differ (holes read as zeros)."""
    with open(first, "rb") as a, open(second, "rb") as b:
        size_a, size_b = os.fstat(a.fileno()).st_size, os.fstat(b.fileno()).st_size
        extents = _merged([*data_extents(a.fileno(), size_a), *data_extents(b.fileno(), size_b)])
        changed = 0
        for start, end in extents:
            first_block = start - start % BLOCK
            for offset in range(first_block, end, _CHUNK):
                length = min(_CHUNK, end - offset)
                left = os.pread(a.fileno(), length, offset)
                right = os.pread(b.fileno(), length, offset)
                if left != right:
                    changed += _differing_blocks(left, right) * BLOCK
        return changed


def _differing_blocks(left: bytes, right: bytes) -> int:
    # A short read is the end of the file: the rest of it reads as zeros.
    length = max(len(left), len(right))
    left, right = left.ljust(length, b"\0"), right.ljust(length, b"\0")
    return sum(1 for i in range(0, length, BLOCK) if left[i : i + BLOCK] != right[i : i + BLOCK])
