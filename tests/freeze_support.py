"""Real file systems for freeze tests: ext4 on loop devices under a kubelet-like root, writers, agents.

Everything made here is released by ``Node.close`` in the one safe order: thaw every file
system first (a writer blocked on a frozen one cannot even die), then stop writers and agents,
then unmount and detach the loop devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from elasticsan_snapshotter.domain.freeze import AgentIdentity, AgentUnavailable
from elasticsan_snapshotter.freeze.client import AgentClient
from elasticsan_snapshotter.freeze.tls import CLIENT_NAME, SERVER_NAME, TlsFiles
from elasticsan_snapshotter.local_cluster.pki import _issue, _name

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
CSI = "kubernetes.io~csi"


def require_loop_devices() -> None:
    """Skip (or, under CI=true, fail) when this machine cannot make loop-mounted ext4 file systems."""
    missing = [tool for tool in ("losetup", "mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "freeze tests need root (loop devices, mount, FIFREEZE)"
    elif not Path("/dev/loop-control").exists():
        reason = "freeze tests need loop devices (/dev/loop-control is missing)"
    elif missing:
        reason = f"freeze tests need {', '.join(missing)}"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def short_dir(prefix: str) -> Path:
    # Unix socket paths are limited to ~107 bytes, too short for pytest's tmp_path.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def is_frozen(path: Path) -> bool:
    """Probe without changing anything: FIFREEZE on a frozen file system fails with EBUSY;
    on a thawed one it freezes, and we thaw at once."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.ioctl(fd, FIFREEZE, 0)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return True
            raise
        fcntl.ioctl(fd, FITHAW, 0)
        return False
    finally:
        os.close(fd)


def force_thaw(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FITHAW, 0)
        finally:
            os.close(fd)


def freeze_directly(path: Path) -> None:
    """Freeze as another tool would (fsfreeze -f)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    finally:
        os.close(fd)


WRITER = r"""
import os, sys, time
data, progress = sys.argv[1], sys.argv[2]
fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
with open(progress, "a", buffering=1) as log:
    seq = 0
    while True:
        os.write(fd, f"{seq} {time.time():.6f}\n".encode())
        os.fsync(fd)
        log.write(f"{seq} {time.time():.6f}\n")
        seq += 1
        time.sleep(0.005)
"""


ALTERNATING_WRITER = r"""
import os, sys, time
volumes, progress = sys.argv[1:-1], sys.argv[-1]
fds = [os.open(os.path.join(v, "records.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for v in volumes]
with open(progress, "a", buffering=1) as log:
    seq = 0
    while True:
        fd = fds[seq % len(fds)]
        os.write(fd, f"{seq} {time.time():.6f}\n".encode())
        os.fsync(fd)
        log.write(f"{seq} {time.time():.6f}\n")
        seq += 1
        time.sleep(0.002)
"""


@dataclass
class Writer:
    """Appends fsynced, numbered records to a file on a volume; logs each one done outside it."""

    process: subprocess.Popen[bytes]
    progress: Path

    def count(self) -> int:
        try:
            return self.progress.read_text().count("\n")
        except FileNotFoundError:
            return 0

    def advancing(self, within: float = 10.0) -> bool:
        start = self.count()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.count() > start + 2:
                return True
            time.sleep(0.05)
        return False

    def done_between(self, start: float, end: float) -> list[int]:
        """Records whose write and fsync completed between two wall-clock times."""
        done = []
        for line in self.progress.read_text().splitlines():
            seq, stamp = line.split()
            if start < float(stamp) < end:
                done.append(int(seq))
        return done

    def stalled(self, over: float = 1.0) -> bool:
        # One record may complete after the freeze returned; none after that.
        time.sleep(0.3)
        start = self.count()
        time.sleep(over)
        return self.count() <= start


@dataclass
class Pki:
    directory: Path
    agent: TlsFiles
    operator: TlsFiles
    _ca: tuple[object, object] = field(default=(None, None), repr=False)

    def client(self, name: str, *, other_ca: bool = False) -> TlsFiles:
        """A client certificate named ``name`` from the agents' CA, or from a CA nobody trusts."""
        stem = f"client-{uuid.uuid4().hex[:6]}"
        ca = self._ca
        if other_ca:
            _, cert, key = _issue(self.directory, f"{stem}-ca", _name("untrusted-ca"), None)
            ca = (cert, key)
        pair, _, _ = _issue(self.directory, stem, _name(name), ca, client=True)
        return TlsFiles(pair.cert, pair.key, self.agent.ca)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_pair, ca_cert, ca_key = _issue(directory, "ca", _name("freeze-agent-ca"), None)
    ca = (ca_cert, ca_key)
    server, _, _ = _issue(directory, "agent", _name(SERVER_NAME), ca, server_names=(SERVER_NAME,))
    client, _, _ = _issue(directory, "operator", _name(CLIENT_NAME), ca, client=True)
    return Pki(
        directory,
        agent=TlsFiles(server.cert, server.key, ca_pair.cert),
        operator=TlsFiles(client.cert, client.key, ca_pair.cert),
        _ca=ca,
    )


class Node:
    """A node stand-in: a kubelet root with pods' CSI volume mounts, each its own loop ext4."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        self.kubelet_root = base / "kubelet"
        self.state_dir = base / "state"
        self.kubelet_root.mkdir(parents=True)
        self._loops: list[str] = []
        self._mounts: list[Path] = []
        self._images: dict[Path, Path] = {}
        self._processes: list[subprocess.Popen[bytes]] = []

    def volume_path(self, pod_uid: str, pv: str) -> Path:
        return self.kubelet_root / "pods" / pod_uid / "volumes" / CSI / pv / "mount"

    def image_of(self, mountpoint: Path) -> Path:
        return self._images[mountpoint]

    def make_fs(self, mountpoint: Path, size_mb: int = 16) -> Path:
        """A fresh ext4 on its own loop device, mounted at ``mountpoint``."""
        mountpoint.mkdir(parents=True, exist_ok=True)
        image = self.base / f"disk-{uuid.uuid4().hex[:8]}.img"
        with image.open("wb") as handle:
            handle.truncate(size_mb * 2**20)
        self._images[mountpoint] = image
        device = run("losetup", "--find", "--show", str(image))
        self._loops.append(device)
        run("mkfs.ext4", "-q", "-F", device)
        run("mount", device, str(mountpoint))
        self._mounts.append(mountpoint)
        return mountpoint

    def mount_volume(self, pod_uid: str, pv: str) -> Path:
        return self.make_fs(self.volume_path(pod_uid, pv))

    def bind(self, source: Path, target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        run("mount", "--bind", str(source), str(target))
        self._mounts.append(target)
        return target

    def start_writer(self, mount: Path, *others: Path) -> Writer:
        """A writer on ``mount``, or one that alternates between ``mount`` and ``others``."""
        progress = self.base / f"progress-{uuid.uuid4().hex[:6]}.log"
        if others:
            args = [ALTERNATING_WRITER, str(mount), *map(str, others), str(progress)]
        else:
            args = [WRITER, str(mount / "records.log"), str(progress)]
        process = subprocess.Popen([sys.executable, "-c", *args])
        self._processes.append(process)
        writer = Writer(process, progress)
        assert writer.advancing(), "the writer never started writing"
        return writer

    def track(self, process: subprocess.Popen[bytes]) -> None:
        self._processes.append(process)

    def close(self) -> None:
        for mount in self._mounts:
            force_thaw(mount)
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for mount in reversed(self._mounts):
            if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        for device in self._loops:
            subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


class AgentProcess:
    """``elasticsan-snapshotter freeze-agent`` as its own process, on 127.0.0.1, for one node."""

    def __init__(self, node: Node, pki: Pki, *extra: str) -> None:
        self.node = node
        self.pki = pki
        self.extra = extra
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.local_socket = node.base / "agent.sock"
        self.process: subprocess.Popen[bytes] | None = None
        tls = node.base / "tls"
        tls.mkdir(exist_ok=True)
        for source, name in (
            (pki.agent.cert, "tls.crt"),
            (pki.agent.key, "tls.key"),
            (pki.agent.ca, "ca.crt"),
        ):
            shutil.copyfile(source, tls / name)
        self.tls_dir = tls

    def command(self, *more: str) -> list[str]:
        return [
            sys.executable, "-m", "elasticsan_snapshotter", "freeze-agent",
            "--listen", self.address, "--node-name", self.node.name,
            "--kubelet-root", str(self.node.kubelet_root), "--state-dir", str(self.node.state_dir),
            "--local-socket", str(self.local_socket), "--tls-dir", str(self.tls_dir),
            *self.extra, *more,
        ]  # fmt: skip

    def launch(self) -> None:
        self.process = subprocess.Popen(self.command())
        self.node.track(self.process)

    async def start(self) -> AgentIdentity:
        """Launch and wait until the agent answers (it thaws its journal before it serves)."""
        self.launch()
        assert self.process is not None
        client = self.client()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    return await client.identity()
                except AgentUnavailable:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await client.close()

    def client(self, tls: TlsFiles | None = None) -> AgentClient:
        return AgentClient(self.address, tls or self.pki.operator)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@contextlib.contextmanager
def node(name: str) -> Iterator[Node]:
    require_loop_devices()
    stand_in = Node(name, short_dir(f"ess-{name}-"))
    try:
        yield stand_in
    finally:
        stand_in.close()


def last_record(image: Path, scratch: Path) -> int | None:
    """Restore a copied image (mount it, replaying its journal as a restore would) and read the
    last complete record; None when the copy does not even mount."""
    mountpoint = scratch / f"restore-{uuid.uuid4().hex[:6]}"
    mountpoint.mkdir(parents=True)
    if subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, check=False
    ).returncode:
        return None
    try:
        lines = (mountpoint / "records.log").read_text().splitlines()
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
        mountpoint.rmdir()
    complete = [line.split()[0] for line in lines if len(line.split()) == 2 and line.split()[0].isdigit()]
    return int(complete[-1]) if complete else None


def pod_uid() -> str:
    return str(uuid.uuid4())
