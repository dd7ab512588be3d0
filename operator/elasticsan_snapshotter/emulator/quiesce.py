"""Hold a volume still while it is copied, so a snapshot is one point in time.

A volume attached on this machine is a loop device on its backing file, with a device-mapper
device on top (what the node stand-in makes). Suspending that device without freezing the file
system above it (``dmsetup suspend --nolockfs``) waits for the writes in flight and holds new
ones back: the copy then sees what a crash at that instant would leave, which is what Azure
promises for a snapshot of one volume. Files that nothing attached are copied as they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("elasticsan_snapshotter.emulator")

_SYS_BLOCK = Path("/sys/block")
_DMSETUP_TIMEOUT = 30.0


def holders(backing_file: Path) -> list[str]:
    """Device-mapper names stacked on the loop devices that have ``backing_file`` open."""
    try:
        loops = [d for d in _SYS_BLOCK.iterdir() if d.name.startswith("loop")]
    except OSError:
        return []
    wanted = os.path.realpath(backing_file)
    names: list[str] = []
    for loop in loops:
        try:
            backing = (loop / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue  # not attached
        if backing.removesuffix(" (deleted)") != wanted:
            continue
        for holder in sorted((loop / "holders").iterdir()):
            with contextlib.suppress(OSError):
                names.append((_SYS_BLOCK / holder.name / "dm" / "name").read_text().strip())
    return names


def _dmsetup(*args: str) -> None:
    subprocess.run(["dmsetup", *args], check=True, capture_output=True, timeout=_DMSETUP_TIMEOUT)


@contextlib.contextmanager
def quiesced(backing_file: Path) -> Iterator[None]:
    names = holders(backing_file) if shutil.which("dmsetup") else []
    suspended: list[str] = []
    try:
        for name in names:
            _dmsetup("suspend", "--nolockfs", name)
            suspended.append(name)
        yield
    finally:
        for name in reversed(suspended):
            try:
                _dmsetup("resume", name)
            except (OSError, subprocess.SubprocessError) as error:
                log.error("could not resume device-mapper device %s: %s", name, error)
