"""The emulator's persistence (snapshot plus journal) and its sweep of finished operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elasticsan_snapshotter.emulator.config import EmulatorConfig
from elasticsan_snapshotter.emulator.lro import IN_PROGRESS, Operations
from elasticsan_snapshotter.emulator.state import Record, Store

pytestmark = pytest.mark.unit

VOLUME = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg/volumes/v"


def _record(resource_id: str, **extra: object) -> Record:
    return {"id": resource_id, "name": resource_id.rsplit("/", 1)[-1], "kind": "volumes", **extra}


def _reloaded(state_dir: Path) -> Store:
    store = Store(state_dir)
    store.load()
    return store


def test_a_change_to_known_records_appends_a_journal_line_instead_of_rewriting(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save()
    snapshot = store.path.read_bytes()
    store.put(_record(VOLUME, size=1))
    store.save_if_dirty()
    store.put(_record(VOLUME + "2", size=2))
    store.save_if_dirty()
    assert store.path.read_bytes() == snapshot  # the snapshot was not rewritten
    assert len(store.journal_path.read_text().splitlines()) == 2
    again = _reloaded(tmp_path)
    assert again.get(VOLUME.upper()) == _record(VOLUME, size=1)
    assert again.get(VOLUME + "2") == _record(VOLUME + "2", size=2)


def test_records_read_by_a_write_are_journalled_with_their_in_place_changes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put(_record(VOLUME, written=5))
    store.save()
    found = store.get(VOLUME)
    assert found is not None
    found["written"] = 0  # as a snapshot PUT resets its source volume
    store.save_if_dirty(writes=True)
    assert _reloaded(tmp_path).get(VOLUME) == _record(VOLUME, written=0)


def test_removals_and_operations_are_replayed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put(_record(VOLUME))
    store.save()
    store.remove(VOLUME)
    store.operations["op1"] = {"id": "op1", "status": IN_PROGRESS}
    store.touch_operation("op1")
    store.save_if_dirty()
    again = _reloaded(tmp_path)
    assert again.get(VOLUME) is None
    assert again.operations == {"op1": {"id": "op1", "status": IN_PROGRESS}}


def test_a_torn_last_line_is_ignored_and_a_snapshot_supersedes_the_journal(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put(_record(VOLUME, size=1))
    store.save_if_dirty()
    with store.journal_path.open("a") as journal:
        journal.write('{"seq": 2, "resources": {"x": ')
    assert _reloaded(tmp_path).get(VOLUME) == _record(VOLUME, size=1)
    store.put(_record(VOLUME, size=3))
    store.mark_dirty()
    store.save_if_dirty()
    assert not store.journal_path.exists()
    assert json.loads(store.path.read_text())["resources"][VOLUME.lower()]["size"] == 3


def test_a_stale_journal_left_beside_a_newer_snapshot_is_not_replayed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put(_record(VOLUME, size=1))
    store.save_if_dirty()
    stale = store.journal_path.read_text()
    store.put(_record(VOLUME, size=2))
    store.save()
    # A crash between the snapshot's rename and the journal's removal leaves both.
    store.journal_path.write_text(stale)
    assert _reloaded(tmp_path).get(VOLUME) == _record(VOLUME, size=2)


def test_the_sweep_keeps_a_bounded_number_of_finished_operations(tmp_path: Path) -> None:
    store = Store(tmp_path)
    operations = Operations(store, EmulatorConfig(state_dir=tmp_path))
    operations.keep_finished = 2000
    volume = _record(VOLUME, state="Succeeded")
    store.put(volume)
    running = None
    for _ in range(2500):
        op = operations.start(
            provider="Microsoft.ElasticSan",
            api_version="2025-09-01",
            location="westeurope",
            action="update",
            resource=volume,
            fault=None,
        )
        running = op["id"]
        operations.settle()  # finishes every operation but the newest ones due later
    assert running is not None
    assert len(store.operations) <= 2000 + 1
    assert running in store.operations  # the newest survives the sweep
