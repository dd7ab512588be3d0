"""The freeze agent as a process, on real ext4 file systems on loop devices, with real writers.

Each test checks the file system itself (a probe FIFREEZE answers EBUSY only when it is
frozen) and a writer that appends fsynced records: it must stall while frozen and resume after.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from elasticsan_snapshotter.domain.errors import AlreadyExists, Forbidden, InvalidRequest, NotFound
from elasticsan_snapshotter.domain.freeze import (
    AgentUnavailable,
    FreezeRefused,
    FrozenBySomeoneElse,
    LeaseState,
    Target,
)
from elasticsan_snapshotter.freeze import ioctl
from elasticsan_snapshotter.freeze.journal import Journal
from elasticsan_snapshotter.freeze.leases import LeaseBook
from elasticsan_snapshotter.freeze.mounts import MountResolver
from freeze_support import (
    AgentProcess,
    Node,
    Pki,
    force_thaw,
    freeze_directly,
    is_frozen,
    make_pki,
    node,
    pod_uid,
    short_dir,
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def node_a() -> Iterator[Node]:
    with node("node-a") as made:
        yield made


async def wait_state(agent: AgentProcess, lease_id: str, state: LeaseState) -> None:
    client = agent.client()
    try:
        async with asyncio.timeout(30):
            while True:  # polls another process's state: no event to wait on
                if (await client.get_lease(lease_id)).state is state:
                    return
                await asyncio.sleep(0.05)
    finally:
        await client.close()


async def test_a_lease_holds_the_writer_until_thawed_and_thaw_is_idempotent(node_a: Node, pki: Pki) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-a")
    writer = node_a.start_writer(mount)
    agent = AgentProcess(node_a, pki)
    identity = await agent.start()
    client = agent.client()
    try:
        lease = await client.freeze("lease-1", [Target(uid, "pv-a")], 60)
        assert lease.state is LeaseState.ACTIVE
        assert lease.boot_id == identity.boot_id
        assert lease.node_name == "node-a"
        assert is_frozen(mount)
        assert writer.stalled(), "the writer kept writing to a frozen file system"

        was_active, thawed = await client.thaw("lease-1")
        assert was_active
        assert thawed.state is LeaseState.THAWED
        assert writer.advancing(), "the writer did not resume after the thaw"
        assert not is_frozen(mount)

        again, _ = await client.thaw("lease-1")
        assert not again
        assert (await client.get_lease("lease-1")).state is LeaseState.THAWED
        # The same lease ID is never reused for a new freeze.
        with pytest.raises(AlreadyExists):
            await client.freeze("lease-1", [Target(uid, "pv-a")], 60)
        assert not is_frozen(mount)
    finally:
        await client.close()


async def test_the_agent_thaws_by_itself_at_the_ttl(node_a: Node, pki: Pki) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-ttl")
    writer = node_a.start_writer(mount)
    agent = AgentProcess(node_a, pki)
    await agent.start()
    client = agent.client()
    try:
        await client.freeze("lease-ttl", [Target(uid, "pv-ttl")], 4.0)
        assert is_frozen(mount)
        assert writer.stalled(over=0.5)
        await wait_state(agent, "lease-ttl", LeaseState.EXPIRED)
        assert not is_frozen(mount)
        assert writer.advancing()
        was_active, _ = await client.thaw("lease-ttl")
        assert not was_active
    finally:
        await client.close()


async def test_a_killed_agent_leaves_the_freeze_until_it_restarts_then_thaws_from_its_journal(
    node_a: Node, pki: Pki
) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-kill")
    writer = node_a.start_writer(mount)
    agent = AgentProcess(node_a, pki)
    first = await agent.start()
    client = agent.client()
    await client.freeze("lease-kill", [Target(uid, "pv-kill")], 2.0)
    await client.close()
    agent.kill()
    # The TTL timer died with the process: the kernel keeps the file system frozen past the TTL.
    await asyncio.sleep(3.0)
    assert is_frozen(mount)
    assert writer.stalled(over=0.5)

    second = await agent.start()
    assert second.boot_id != first.boot_id
    client = agent.client()
    try:
        lease = await client.get_lease("lease-kill")
        assert lease.state is LeaseState.THAWED_ON_RESTART
        assert lease.boot_id == first.boot_id  # the boot that froze it, so no proof can hold
        assert not is_frozen(mount)
        assert writer.advancing()
    finally:
        await client.close()


async def test_a_file_system_frozen_by_someone_else_is_never_thawed_by_the_agent(
    node_a: Node, pki: Pki
) -> None:
    ours, theirs = pod_uid(), pod_uid()
    mine = node_a.mount_volume(ours, "pv-mine")
    other = node_a.mount_volume(theirs, "pv-theirs")
    agent = AgentProcess(node_a, pki)
    await agent.start()
    freeze_directly(other)
    try:
        client = agent.client()
        try:
            with pytest.raises(FrozenBySomeoneElse, match="frozen by someone else"):
                await client.freeze("lease-busy", [Target(ours, "pv-mine"), Target(theirs, "pv-theirs")], 60)
            with pytest.raises(NotFound):
                await client.get_lease("lease-busy")
        finally:
            await client.close()
        assert not is_frozen(mine), "the request was not all-or-nothing"
        assert is_frozen(other)
        agent.kill()
        await agent.start()  # recovery from the journal must not touch it either
        assert is_frozen(other)
    finally:
        force_thaw(other)


async def test_unsafe_targets_are_refused_and_nothing_is_frozen(node_a: Node, pki: Pki) -> None:
    host_root = node_a.make_fs(node_a.base / "host-root")  # stands in for the node's /
    good_uid = pod_uid()
    good = node_a.mount_volume(good_uid, "pv-good")
    outside = node_a.make_fs(node_a.base / "outside")
    agent = AgentProcess(node_a, pki, "--host-root", str(host_root), "--max-ttl", "30")
    await agent.start()

    root_uid = pod_uid()
    node_a.bind(host_root, node_a.volume_path(root_uid, "pv-root"))
    link_uid = pod_uid()
    node_a.volume_path(link_uid, "pv-link").parent.mkdir(parents=True)
    node_a.volume_path(link_uid, "pv-link").symlink_to(outside)
    block_uid = pod_uid()
    (node_a.kubelet_root / "pods" / block_uid / "volumeDevices" / "kubernetes.io~csi").mkdir(parents=True)
    (node_a.kubelet_root / "pods" / block_uid / "volumeDevices" / "kubernetes.io~csi" / "pv-block").touch()
    dir_uid = pod_uid()
    # A directory inside some other mount is no file system of its own.
    (node_a.make_fs(node_a.volume_path(dir_uid, "pv-dir").parent) / "mount").mkdir()
    bind_uid = pod_uid()
    node_a.bind(node_a.kubelet_root / "pods", node_a.volume_path(bind_uid, "pv-kubelet"))

    refused = {
        Target(root_uid, "pv-root"): "file system of .*host-root",
        Target(link_uid, "pv-link"): "symlink .* outside the kubelet root",
        Target(block_uid, "pv-block"): "block-mode",
        Target(dir_uid, "pv-dir"): "not a mount point",
        Target(bind_uid, "pv-kubelet"): "file system of .*kubelet",
        Target(pod_uid(), "pv-absent"): "does not mount",
    }
    client = agent.client()
    try:
        for n, (target, message) in enumerate(refused.items()):
            # Each next to a target that is fine: the whole request is refused.
            with pytest.raises(FreezeRefused, match=message):
                await client.freeze(f"refused-{n}", [Target(good_uid, "pv-good"), target], 10)
        with pytest.raises(FreezeRefused, match="not a valid object name"):
            await client.freeze("refused-name", [Target(good_uid, "../../x")], 10)
        with pytest.raises(InvalidRequest, match="at most 30s"):
            await client.freeze("refused-ttl", [Target(good_uid, "pv-good")], 31)
        with pytest.raises(InvalidRequest, match="lease ID"):
            await client.freeze("Refused_ID", [Target(good_uid, "pv-good")], 10)
    finally:
        await client.close()
    for path in (host_root, good, outside, node_a.volume_path(dir_uid, "pv-dir")):
        assert not is_frozen(path), f"{path} was frozen by a refused request"


def test_the_real_root_file_system_is_refused(node_a: Node) -> None:
    # Resolution only: this never comes near a freeze of the machine's own root.
    uid = pod_uid()
    node_a.bind(Path("/"), node_a.volume_path(uid, "pv-slash"))
    resolver = MountResolver(node_a.kubelet_root, (Path("/"),))
    with pytest.raises(FreezeRefused, match="freezing it would stall the node"):
        resolver.resolve(Target(uid, "pv-slash"))


async def test_only_the_operators_client_certificate_is_accepted(node_a: Node, pki: Pki) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-tls")
    agent = AgentProcess(node_a, pki)
    await agent.start()
    strangers = {
        "untrusted CA": (pki.client("elasticsan-snapshotter-operator", other_ca=True), AgentUnavailable),
        "wrong name": (pki.client("someone-else"), Forbidden),
    }
    for label, (tls, error) in strangers.items():
        client = agent.client(tls)
        try:
            with pytest.raises(error):
                await client.freeze(f"stranger-{error.reason.lower()}", [Target(uid, "pv-tls")], 10)
            with pytest.raises(error):
                await client.identity()
        finally:
            await client.close()
        assert not is_frozen(mount), label
    client = agent.client()
    try:
        for error in (AgentUnavailable, Forbidden):
            with pytest.raises(NotFound):
                await client.get_lease(f"stranger-{error.reason.lower()}")
    finally:
        await client.close()


async def test_stop_and_the_prestop_hook_thaw_every_lease(node_a: Node, pki: Pki) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-stop")
    agent = AgentProcess(node_a, pki)
    await agent.start()
    client = agent.client()
    try:
        await client.freeze("lease-prestop", [Target(uid, "pv-stop")], 60)
        assert is_frozen(mount)
        hook = await asyncio.to_thread(
            subprocess.run,
            agent.command("--thaw-all"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert hook.returncode == 0, hook.stderr
        assert "lease-prestop" in hook.stderr
        assert not is_frozen(mount)
        assert (await client.get_lease("lease-prestop")).state is LeaseState.THAWED_ON_SHUTDOWN

        await client.freeze("lease-sigterm", [Target(uid, "pv-stop")], 60)
        assert is_frozen(mount)
    finally:
        await client.close()
    assert agent.stop() == 0
    assert not is_frozen(mount)


async def test_a_thaw_that_fails_is_reported_overdue_and_retried(
    node_a: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = pod_uid()
    mount = node_a.mount_volume(uid, "pv-eio")
    book = LeaseBook(
        MountResolver(node_a.kubelet_root, (Path("/"),)),
        Journal(node_a.state_dir),
        node_name="node-a",
        max_ttl=60,
        keep_results=60,
    )
    await book.freeze("lease-eio", [Target(uid, "pv-eio")], 60)
    assert book.overdue_seconds() == 0

    def failing_thaw(path: Path) -> bool:
        raise OSError(errno.EIO, "injected")

    with monkeypatch.context() as patch:
        patch.setattr(ioctl, "thaw", failing_thaw)
        was_active, _ = await book.thaw("lease-eio")
    assert was_active
    assert is_frozen(mount)
    assert book.overdue_seconds() > 0  # alerting material: frozen although the lease has ended
    await book.retry_unthawed()
    assert not is_frozen(mount)
    assert book.overdue_seconds() == 0


async def test_rotated_certificate_files_are_used_without_a_restart(tmp_path: Path) -> None:
    stand_in = Node("rotating", short_dir("ess-rotate-"))
    try:
        old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
        agent = AgentProcess(stand_in, old)
        first = await agent.start()
        for source, name in (
            (new.agent.cert, "tls.crt"),
            (new.agent.key, "tls.key"),
            (new.agent.ca, "ca.crt"),
        ):
            staged = agent.tls_dir / f".{name}"
            shutil.copyfile(source, staged)
            staged.replace(agent.tls_dir / name)
        client = agent.client(new.operator)
        try:
            assert (await client.identity()).boot_id == first.boot_id  # same process, new certificates
        finally:
            await client.close()
        client = agent.client(old.operator)
        try:
            with pytest.raises(AgentUnavailable):
                await client.identity()
        finally:
            await client.close()
    finally:
        stand_in.close()
