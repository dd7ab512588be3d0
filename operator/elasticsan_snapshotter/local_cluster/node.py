"""A node stand-in for tests and the demo: it mounts emulated Elastic SAN volumes where kubelet would.

There is no iSCSI initiator here, so the emulator's admin API stands in for the iSCSI login:
given a PV's target IQN and portal it names the file that holds the volume. The stand-in then
does what csi-driver-iscsi and kubelet do on a node, with local means: it attaches the file as
a loop device, makes an ext4 file system on first use, and mounts it at
``<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv name>/mount``.

It needs root and loop devices; :func:`unavailable` says in one line why not. Everything it
made is undone by :meth:`NodeStandIn.close`, newest first, and :meth:`NodeStandIn.leftovers`
looks at the system itself (not at its own bookkeeping) for anything still there.
:meth:`NodeStandIn.reflink_directory` mounts a scratch XFS file system, where the emulator's
snapshots are reflinks and so one point in time even under a writer. Not a product feature:
production nodes use csi-driver-iscsi.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from elasticsan_snapshotter.emulator.process import AdminClient

_TOOLS = ("losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "blockdev")
_EXT4_MAGIC_OFFSET = 1080  # superblock at 1024, s_magic at +56
_EXT4_MAGIC = b"\x53\xef"
# Lazy inode tables and journal, and no background zeroing: a fresh 10 GiB file system
# writes a few MiB to its (sparse) volume instead of hundreds.
_MKFS = ("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1")
_MOUNT_OPTIONS = "noinit_itable"
_TIMEOUT = 120.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


class NodeError(Exception):
    """A node step failed; the message says which command and why."""


def _tool(name: str) -> str | None:
    # System tools live in sbin, which a plain user PATH may leave out.
    return shutil.which(name) or shutil.which(name, path=_SYSTEM_PATH)


def unavailable() -> str | None:
    """Why volumes cannot be mounted here (one line), or None when they can."""
    if os.geteuid() != 0:
        return "the node stand-in needs root (loop devices, mount)"
    missing = [tool for tool in _TOOLS if _tool(tool) is None]
    if missing:
        return f"the node stand-in needs {', '.join(missing)} on PATH"
    if not os.path.exists("/dev/loop-control"):
        return "the node stand-in needs loop devices (/dev/loop-control is missing)"
    return None


def reflink_unavailable() -> str | None:
    """Why no reflink (XFS) scratch file system can be made here, or None."""
    reason = unavailable()
    if reason is None and _tool("mkfs.xfs") is None:
        reason = "point-in-time copies need a reflink file system: mkfs.xfs (xfsprogs) is not on PATH"
    return reason


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [_tool(command[0]) or command[0], *command[1:]]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NodeError(f"{' '.join(command)}: {error}") from error
    if check and done.returncode != 0:
        raise NodeError(
            f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done


@dataclass
class Mount:
    """One volume published to one pod."""

    pv_name: str
    pod_uid: str
    path: Path
    backing_file: Path
    device: str
    formatted: bool = False
    mounted: bool = False

    def write(self, name: str, data: bytes) -> str:
        """Write a file and sync it to the volume; returns its SHA-256."""
        with open(self.path / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.sync()  # the file system's metadata too, down to the volume
        return hashlib.sha256(data).hexdigest()

    def sha256(self, name: str) -> str:
        return hashlib.sha256((self.path / name).read_bytes()).hexdigest()

    def size_bytes(self) -> int:
        """The block device's size, as the pod's file system sees its disk."""
        return int(_run("blockdev", "--getsize64", self.device).stdout.strip())


@dataclass
class NodeStandIn:
    # None for a stand-in that only makes scratch file systems.
    admin: AdminClient | None
    kubelet_root: Path
    _mounts: list[Mount] = field(default_factory=list)
    _scratch: list[tuple[Path, str, Path]] = field(default_factory=list)
    _mount_roots: set[str] = field(default_factory=set)
    _made_dirs: list[Path] = field(default_factory=list)
    _backing_files: set[str] = field(default_factory=set)

    def publish(self, pv_name: str, attributes: Mapping[str, str], pod_uid: str | None = None) -> Mount:
        """Log in to the PV's target, attach it, format it on first use and mount it for a pod."""
        iqn = attributes.get("iqn")
        if not iqn:
            raise NodeError(f"PV {pv_name} has no iqn volume attribute")
        if self.admin is None:
            raise NodeError("this node stand-in has no emulator to log in to")
        login = self.admin.iscsi_login(iqn, attributes.get("targetPortal"))
        backing = Path(login["path"])
        pod = pod_uid or str(uuid.uuid4())
        path = self.kubelet_root / "pods" / pod / "volumes" / "kubernetes.io~csi" / pv_name / "mount"
        mount = Mount(pv_name, pod, path, backing, self._attach(backing))
        self._mounts.append(mount)
        if not _has_ext4(mount.device):
            _run(*_MKFS, mount.device)
            mount.formatted = True
        self._mkdirs(path)
        _run("mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, mount.device, str(path))
        mount.mounted = True
        return mount

    def unmount(self, mount: Mount) -> None:
        """Unmount (syncing the file system to the volume), keeping the device attached."""
        if mount.mounted:
            _run("umount", str(mount.path))
            mount.mounted = False

    def fsck(self, mount: Mount) -> subprocess.CompletedProcess[str]:
        """``e2fsck -fn`` on the unmounted device: exit status 0 means the file system is clean."""
        self.unmount(mount)
        return _run("e2fsck", "-fn", mount.device, check=False)

    def unpublish(self, mount: Mount) -> None:
        self.unmount(mount)
        _run("losetup", "--detach", mount.device)
        self._mounts.remove(mount)

    def reflink_directory(self, size_gib: int = 64) -> Path:
        """A scratch XFS file system (sparse image, loop device, mount) with reflinks; undone by close."""
        scratch = Path(tempfile.mkdtemp(prefix="ess-reflink-"))
        image, directory = scratch / "xfs.img", scratch / "mnt"
        with open(image, "xb") as handle:
            handle.truncate(size_gib * 1024**3)
        directory.mkdir()
        try:
            _run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
            loop = self._attach(image)
        except NodeError:
            shutil.rmtree(scratch)
            raise
        self._scratch.append((scratch, loop, directory))
        self._mount_roots.add(str(directory))
        _run("mount", "-t", "xfs", loop, str(directory))
        return directory

    def _attach(self, backing: Path) -> str:
        self._backing_files.add(os.path.realpath(backing))
        return _run("losetup", "--find", "--show", str(backing)).stdout.strip()

    def close(self) -> None:
        """Undo everything, newest first; every step is tried even when one fails."""
        errors: list[str] = []
        for mount in reversed(list(self._mounts)):
            try:
                self.unpublish(mount)
            except NodeError as error:
                errors.append(str(error))
        for directory in reversed(self._made_dirs):
            try:
                directory.rmdir()
            except OSError as error:
                errors.append(f"rmdir {directory}: {error}")
        self._made_dirs.clear()
        for scratch, loop, mounted in reversed(self._scratch):
            for command in (("umount", str(mounted)), ("losetup", "--detach", loop)):
                try:
                    _run(*command)
                except NodeError as error:
                    errors.append(str(error))
            shutil.rmtree(scratch, ignore_errors=True)
        self._scratch.clear()
        if errors:
            raise NodeError("; ".join(errors))

    def leftovers(self) -> list[str]:
        """Loop devices on the files it attached and mounts it made, still present."""
        found: list[str] = []
        for loop in sorted(Path("/sys/block").glob("loop*")):
            try:
                backing = (loop / "loop" / "backing_file").read_text().strip().removesuffix(" (deleted)")
            except OSError:
                continue
            if backing in self._backing_files:
                found.append(f"loop device /dev/{loop.name} on {backing}")
        roots = [str(self.kubelet_root), *self._mount_roots]
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            for line in mounts:
                point = line.split()[4]
                if any(point == root or point.startswith(root + "/") for root in roots):
                    found.append(f"mount {point}")
        return found

    def _mkdirs(self, path: Path) -> None:
        missing: list[Path] = []
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        path.mkdir(parents=True)
        self._made_dirs.extend(reversed(missing))

    def __enter__(self) -> NodeStandIn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _has_ext4(device: str) -> bool:
    with open(device, "rb") as handle:
        handle.seek(_EXT4_MAGIC_OFFSET)
        return handle.read(2) == _EXT4_MAGIC
