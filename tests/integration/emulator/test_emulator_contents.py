"""Volumes hold bytes: snapshots, restores and exports copy them, deletes free them, capacity measures them.

Bytes go in and come out through the backing file the admin iSCSI login stand-in names, as a
node would see them through its iSCSI session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import Volume
from emulator_sdk import StartEmulator, credential, elasticsan_client, export_body, make_layout
from emulator_sdk import snapshot_body as snap

from elasticsan_snapshotter.emulator.process import EmulatorError, EmulatorProcess
from waiting import wait_for

pytestmark = pytest.mark.integration

GIB = 1024**3
MIB = 1024**2


def _backing(emulator: EmulatorProcess, volume: Volume) -> Path:
    target = volume.storage_target
    assert target is not None
    assert target.target_iqn is not None
    portal = f"{target.target_portal_hostname}:{target.target_portal_port}"
    answer = emulator.admin.iscsi_login(target.target_iqn, portal)
    assert answer["volumeId"].lower() == str(volume.id).lower()
    path = Path(answer["path"])
    assert answer["sizeBytes"] == path.stat().st_size == int(volume.size_gi_b or 0) * GIB
    return path


def _write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def _from_source(kind: str, source_id: str, size_gib: int) -> dict[str, object]:
    return {
        "properties": {"sizeGiB": size_gib, "creationData": {"createSource": kind, "sourceId": source_id}}
    }


def test_a_restore_holds_the_content_of_its_snapshot(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, rg: str
) -> None:
    layout = make_layout(esan, rg)
    source = _backing(emulator, layout.volume)
    old, new = os.urandom(MIB), os.urandom(MIB)
    _write(source, 3 * GIB, old)
    first = esan.volume_snapshots.begin_create(rg, "san1", "vg1", "first", snap(layout.volume_id)).result()
    _write(source, 3 * GIB, new)  # after the PUT: not in the snapshot
    second = esan.volume_snapshots.begin_create(rg, "san1", "vg1", "second", snap(layout.volume_id)).result()

    create = esan.volumes.begin_create
    from_first = create(
        rg, "san1", "vg1", "from-first", _from_source("VolumeSnapshot", str(first.id), 10)
    ).result()
    from_second = create(
        rg, "san1", "vg1", "from-second", _from_source("VolumeSnapshot", str(second.id), 30)
    ).result()
    assert _read(_backing(emulator, from_first), 3 * GIB, MIB) == old
    larger = _backing(emulator, from_second)
    assert _read(larger, 3 * GIB, MIB) == new
    assert larger.stat().st_size == 30 * GIB
    # The source kept its current content, and a restore is independent of it.
    _write(larger, 3 * GIB, old)
    assert _read(source, 3 * GIB, MIB) == new


def test_an_export_carries_the_content_past_the_source(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, compute: ComputeManagementClient, rg: str
) -> None:
    layout = make_layout(esan, rg)
    data = os.urandom(2 * MIB)
    _write(_backing(emulator, layout.volume), GIB, data)
    snapshot = esan.volume_snapshots.begin_create(rg, "san1", "vg1", "s1", snap(layout.volume_id)).result()
    disk = compute.snapshots.begin_create_or_update(rg, "export", export_body(str(snapshot.id))).result()
    esan.volumes.begin_delete(rg, "san1", "vg1", "vol1", x_ms_delete_snapshots="true").result()
    wait_for(
        "the export to finish copying",
        lambda: compute.snapshots.get(rg, "export").completion_percent == 100.0,
        timeout=60,
        interval=0.1,
    )
    restored = esan.volumes.begin_create(
        rg, "san1", "vg1", "restored", _from_source("DiskSnapshot", str(disk.id), 12)
    ).result()
    assert _read(_backing(emulator, restored), GIB, 2 * MIB) == data


def test_deleting_frees_the_files(start_emulator: StartEmulator) -> None:
    emulator = start_emulator()
    contents = emulator.state_dir / "contents"
    with credential(emulator.info) as cred, elasticsan_client(emulator.info, cred) as esan:
        layout = make_layout(esan, "rg")
        _write(_backing(emulator, layout.volume), 0, b"x" * MIB)
        esan.volume_snapshots.begin_create("rg", "san1", "vg1", "s1", snap(layout.volume_id)).result()
        assert len(list(contents.iterdir())) == 2
        esan.volumes.begin_delete("rg", "san1", "vg1", "vol1", x_ms_delete_snapshots="true").result()
        assert list(contents.iterdir()) == []
    # Files nothing refers to (a crash between a change and its save) go at the next start.
    (contents / "0123abcd.img").write_bytes(b"lost")
    emulator.restart()
    assert list(contents.iterdir()) == []


def test_a_snapshot_costs_the_blocks_changed_since_the_previous_one(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, rg: str
) -> None:
    layout = make_layout(esan, rg, size_gib=1023)  # 1 GiB of the 1 TiB SAN is free
    source = _backing(emulator, layout.volume)
    create = esan.volume_snapshots.begin_create
    _write(source, 0, os.urandom(MIB))
    create(rg, "san1", "vg1", "first", snap(layout.volume_id)).result()  # the first costs nothing
    create(rg, "san1", "vg1", "unchanged", snap(layout.volume_id)).result()  # nothing changed: free
    _write(source, 500 * GIB, b"y")
    create(rg, "san1", "vg1", "one-block", snap(layout.volume_id)).result()  # rounds up to 1 GiB
    _write(source, 700 * GIB, b"z")
    with pytest.raises(ResourceExistsError) as full:
        create(rg, "san1", "vg1", "no-room", snap(layout.volume_id)).result()
    assert full.value.error is not None
    assert full.value.error.code == "QuotaExceeded"
    # The admin override still decides when it is set.
    emulator.admin.set_written(layout.volume_id, 0)
    create(rg, "san1", "vg1", "declared-free", snap(layout.volume_id)).result()


def test_the_login_stand_in_names_targets_only(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, rg: str
) -> None:
    layout = make_layout(esan, rg)
    target = layout.volume.storage_target
    assert target is not None
    assert target.target_iqn is not None
    assert Path(emulator.admin.iscsi_login(target.target_iqn.upper())["path"]).is_file()  # IQNs ignore case
    with pytest.raises(EmulatorError, match="404"):
        emulator.admin.iscsi_login(target.target_iqn, "es-other.z1.blob.storage.azure.net:3260")
    with pytest.raises(EmulatorError, match="404"):
        emulator.admin.iscsi_login("iqn.2026-01.net.windows.core.blob.ElasticSan.es-nothing:vol1")
    esan.volumes.begin_delete(rg, "san1", "vg1", "vol1").result()
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(rg, "san1", "vg1", "vol1")
    with pytest.raises(EmulatorError, match="404"):
        emulator.admin.iscsi_login(target.target_iqn)


def test_fifty_large_volumes_cost_only_what_was_written(start_emulator: StartEmulator) -> None:
    emulator = start_emulator()
    state = emulator.state_dir
    written = 0
    with credential(emulator.info) as cred, elasticsan_client(emulator.info, cred) as esan:
        layout = make_layout(esan, "rg", base_tib=5, size_gib=100)
        pollers = [
            esan.volumes.begin_create("rg", "san1", "vg1", f"vol{i}", {"properties": {"sizeGiB": 100}})
            for i in range(2, 51)
        ]
        volumes = [layout.volume, *(p.result() for p in pollers)]
        for index, volume in enumerate(volumes):
            path = _backing(emulator, volume)
            _write(path, index * GIB, os.urandom(256 * 1024))
            esan.volume_snapshots.begin_create(
                "rg", "san1", "vg1", f"a-{index}", snap(str(volume.id))
            ).result()
            _write(path, 99 * GIB, os.urandom(256 * 1024))
            esan.volume_snapshots.begin_create(
                "rg", "san1", "vg1", f"b-{index}", snap(str(volume.id))
            ).result()
            # The volume holds 512 KiB, its first snapshot 256 KiB, its second 512 KiB.
            written += 5 * 256 * 1024
    allocated = sum(p.stat().st_blocks * 512 for p in state.rglob("*") if p.is_file())
    metadata = 16 * MIB  # state.json, certificates, log
    assert allocated <= written + metadata, f"{allocated} bytes allocated for {written} bytes written"
    kinds = [r["type"].rsplit("/", 1)[-1] for r in emulator.admin.resources()]
    assert (kinds.count("volumes"), kinds.count("snapshots")) == (50, 100)
    assert sum(1 for _ in (state / "contents").iterdir()) == 150
