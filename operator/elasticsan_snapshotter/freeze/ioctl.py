"""FIFREEZE and FITHAW, the kernel's own freeze of a mounted file system (what fsfreeze(8) calls).

A freeze belongs to the superblock, not to the process: it outlives the agent, and a second
FIFREEZE fails with EBUSY, which is how a freeze set by someone else shows itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from elasticsan_snapshotter.domain.freeze import FreezeRefused, FrozenBySomeoneElse

# _IOWR('X', 119, int) and _IOWR('X', 120, int) from linux/fs.h.
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


def _ioctl(path: Path, request: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, 0)
    finally:
        os.close(fd)


def freeze(path: Path) -> None:
    """Freeze the file system mounted at ``path``; flushes its dirty data first (the kernel does)."""
    try:
        _ioctl(path, FIFREEZE)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise FrozenBySomeoneElse(f"{path} is already frozen by someone else; left as it is") from None
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
            raise FreezeRefused(
                f"the file system at {path} cannot be frozen ({os.strerror(exc.errno)})"
            ) from None
        raise


def thaw(path: Path) -> bool:
    """Thaw the file system at ``path``; False when it was not frozen (EINVAL), which is not an error."""
    try:
        _ioctl(path, FITHAW)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


__all__ = ["FIFREEZE", "FITHAW", "freeze", "thaw"]
