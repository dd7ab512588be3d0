"""The emulator store's lookups by kind, parent and source use indexes, not a scan of every resource."""

from __future__ import annotations

from collections.abc import ValuesView
from pathlib import Path
from typing import Any

import pytest

from elasticsan_snapshotter.emulator.state import Record, Store

pytestmark = pytest.mark.unit

GROUP = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san/volumegroups/vg"


class CountingDict(dict[str, Record]):
    """Counts the full passes over the stored resources."""

    scans = 0

    def values(self) -> ValuesView[Record]:
        CountingDict.scans += 1
        return super().values()

    def items(self) -> Any:
        CountingDict.scans += 1
        return super().items()


def _fill(store: Store, volumes: int, snapshots_per_volume: int) -> None:
    store.put({"id": GROUP, "name": "vg", "kind": "volumegroups", "parent": None})
    for v in range(volumes):
        volume = f"{GROUP}/volumes/Vol-{v:03d}"
        store.put({"id": volume, "name": f"Vol-{v:03d}", "kind": "volumes", "parent": GROUP.lower()})
        for s in range(snapshots_per_volume):
            store.put(
                {
                    "id": f"{GROUP}/snapshots/s-{v:03d}-{s}",
                    "name": f"s-{v:03d}-{s}",
                    "kind": "snapshots",
                    "parent": GROUP.lower(),
                    "source": volume.lower(),
                }
            )


def _scanned(store: Store, kind: str, **fields: Any) -> list[Record]:
    return [
        r
        for r in dict.values(store.resources)
        if r["kind"] == kind and all(r.get(k) == v for k, v in fields.items())
    ]


def test_children_by_kind_and_source_need_no_pass_over_the_stored_resources(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.resources = CountingDict()
    _fill(store, volumes=20, snapshots_per_volume=5)
    volume = f"{GROUP}/volumes/vol-007".lower()
    CountingDict.scans = 0
    snapshots = store.children(GROUP.upper(), "snapshots")
    volumes = store.of_kind("volumes")
    of_volume = store.of_source(volume.upper())
    assert CountingDict.scans == 0
    assert [r["name"] for r in snapshots] == sorted(
        r["name"] for r in _scanned(store, "snapshots", parent=GROUP.lower())
    )
    assert len(snapshots) == 100
    assert [r["id"] for r in volumes] == sorted(r["id"] for r in _scanned(store, "volumes"))
    assert sorted(r["name"] for r in of_volume) == [f"s-007-{s}" for s in range(5)]


def test_the_indexes_follow_replacements_removals_and_a_reload(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _fill(store, volumes=3, snapshots_per_volume=2)
    store.save()
    first = f"{GROUP}/snapshots/s-000-0"
    store.remove(first)
    # A replaced record moves in the indexes with its new fields.
    store.put({"id": f"{GROUP}/snapshots/s-001-0", "name": "s-001-0", "kind": "snapshots", "parent": GROUP.lower(),
               "source": f"{GROUP}/volumes/vol-002".lower()})  # fmt: skip
    store.save_if_dirty()
    for current in (store, _reloaded(tmp_path)):
        assert [r["name"] for r in current.of_source(f"{GROUP}/volumes/vol-000")] == ["s-000-1"]
        assert [r["name"] for r in current.of_source(f"{GROUP}/volumes/vol-001")] == ["s-001-1"]
        assert sorted(r["name"] for r in current.of_source(f"{GROUP}/volumes/vol-002")) == [
            "s-001-0",
            "s-002-0",
            "s-002-1",
        ]
        assert len(current.children(GROUP, "snapshots", ordered=False)) == 5
        assert len(current.of_kind("volumes")) == 3


def _reloaded(state_dir: Path) -> Store:
    store = Store(state_dir)
    store.load()
    return store
