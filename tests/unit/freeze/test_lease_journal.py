"""The lease journal across restarts: what a new agent thaws, keeps and forgets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from elasticsan_snapshotter.domain.errors import NotFound
from elasticsan_snapshotter.domain.freeze import LeaseState
from elasticsan_snapshotter.freeze.journal import FREEZING, FrozenMount, Journal, LeaseRecord
from elasticsan_snapshotter.freeze.leases import LeaseBook
from elasticsan_snapshotter.freeze.mounts import MountResolver

pytestmark = pytest.mark.unit

UID = "0b6f1c52-57a4-4d4e-9a53-1b1c4d7c8e01"


def record(lease_id: str, state: str, ended_ago: float | None, path: Path) -> LeaseRecord:
    now = time.time()
    return LeaseRecord(
        lease_id=lease_id,
        state=state,
        boot_id="old-boot",
        node_name="node-1",
        mounts=[FrozenMount(UID, "pv-1", str(path), "253:99")],
        frozen_at=now - 100,
        expires_at=now - 90,
        ended_at=0.0 if ended_ago is None else now - ended_ago,
    )


def book(tmp_path: Path) -> LeaseBook:
    (tmp_path / "kubelet").mkdir(exist_ok=True)
    resolver = MountResolver(tmp_path / "kubelet", (tmp_path,), mountinfo=tmp_path / "mountinfo")
    (tmp_path / "mountinfo").write_text("")
    return LeaseBook(resolver, Journal(tmp_path / "state"), node_name="node-1", max_ttl=120, keep_results=600)


async def test_a_restart_ends_open_leases_keeps_recent_results_and_forgets_old_ones(tmp_path: Path) -> None:
    gone = tmp_path / "kubelet" / "pods" / UID / "volumes" / "kubernetes.io~csi" / "pv-1" / "mount"
    Journal(tmp_path / "state").save(
        {
            "open": record("open", FREEZING, None, gone),
            "recent": record("recent", LeaseState.EXPIRED.value, 60, gone),
            "old": record("old", LeaseState.THAWED.value, 3600, gone),
        }
    )
    restarted = book(tmp_path)
    assert await restarted.recover() == ["open"]
    assert restarted.get("open").lease_state() is LeaseState.THAWED_ON_RESTART
    assert restarted.get("open").boot_id == "old-boot"
    assert restarted.get("recent").lease_state() is LeaseState.EXPIRED
    with pytest.raises(NotFound):
        restarted.get("old")
    # An unmounted file system cannot be thawed, but nothing can write to it either: not overdue.
    assert restarted.overdue_seconds() == 0
    # What the journal holds now is what a further restart sees.
    again = book(tmp_path)
    assert await again.recover() == []
    assert set(Journal(tmp_path / "state").load()) == {"open", "recent"}
    assert again.boot_id != restarted.boot_id


def test_the_journal_is_replaced_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.save({"a": record("a", FREEZING, None, tmp_path)})
    (tmp_path / "leases.tmp").write_text("{half a journal")  # a crash during the next save
    assert set(journal.load()) == {"a"}
    journal.save({})
    assert journal.load() == {}
