"""Starting, stopping, restarting and seeding the emulator process."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from emulator_sdk import LOCATION, StartEmulator, credential, elasticsan_client, make_layout, snapshot_body

from elasticsan_snapshotter.emulator.process import EmulatorError, EmulatorProcess

pytestmark = pytest.mark.integration


def test_ready_line_names_everything_a_client_needs(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    assert info.endpoint.startswith("https://127.0.0.1:")
    assert info.authority == info.endpoint
    assert Path(info.ca_cert).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for value in (info.subscription_id, info.tenant_id, info.client_id, info.client_secret):
        assert value
    assert info.reader_client_id != info.client_id
    assert process.stop() == 0
    assert not process.running()


def test_identity_and_certificate_survive_a_restart(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    first = process.info
    ca = Path(first.ca_cert).read_bytes()
    second = process.restart(keep_port=True)
    assert second.port == first.port
    assert (second.subscription_id, second.client_id, second.client_secret) == (
        first.subscription_id,
        first.client_id,
        first.client_secret,
    )
    assert Path(second.ca_cert).read_bytes() == ca


def test_restart_keeps_every_resource(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        layout = make_layout(client, "rg")
        client.volume_snapshots.begin_create(
            "rg", "san1", "vg1", "snap1", snapshot_body(layout.volume_id)
        ).result()
    info = process.restart()
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        volume = client.volumes.get("rg", "san1", "vg1", "vol1")
        assert volume.id == layout.volume_id
        assert volume.storage_target is not None
        assert layout.volume.storage_target is not None
        assert volume.storage_target.target_iqn == layout.volume.storage_target.target_iqn
        assert [s.name for s in client.volume_snapshots.list_by_volume_group("rg", "san1", "vg1")] == [
            "snap1"
        ]


def test_a_crash_loses_nothing_acknowledged(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        make_layout(client, "rg")
    process.kill()
    info = process.start()
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        assert client.volumes.get("rg", "san1", "vg1", "vol1").size_gi_b == 10


def test_seed_file_precreates_resources_once(start_emulator: StartEmulator, tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "elasticSans": [
                    {
                        "resourceGroup": "demo",
                        "name": "san-demo",
                        "location": LOCATION,
                        "baseSizeTiB": 2,
                        "extendedCapacitySizeTiB": 1,
                        "volumeGroups": [{"name": "vg-demo", "volumes": [{"name": "data-0", "sizeGiB": 20}]}],
                    }
                ],
                "diskSnapshots": [
                    {"resourceGroup": "demo", "name": "disk-snap", "location": LOCATION, "diskSizeGB": 8}
                ],
            }
        )
    )
    process = start_emulator("--seed", str(seed))
    info = process.restart()  # seeding again must not duplicate or fail
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        san = client.elastic_sans.get("demo", "san-demo")
        assert san.total_size_ti_b == 3
        assert san.total_volume_size_gi_b == 20
        assert [v.name for v in client.volumes.list_by_volume_group("demo", "san-demo", "vg-demo")] == [
            "data-0"
        ]
    kinds = sorted(r["type"] for r in process.admin.resources())
    assert kinds.count("Microsoft.Compute/snapshots") == 1


def test_a_process_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    process = EmulatorProcess(tmp_path / "bad", extra_args=["--faults", "put:volumes:nonsense:1"])
    with pytest.raises(EmulatorError, match="exited with status 2") as error:
        process.start()
    assert "unknown action 'nonsense'" in str(error.value)
    assert not process.running()


def test_command_runs_the_installed_module(tmp_path: Path) -> None:
    process = EmulatorProcess(tmp_path / "e", seed=tmp_path / "s.json", faults="latency:1", latency_ms=2)
    command = process.command()
    assert command[:4] == [sys.executable, "-m", "elasticsan_snapshotter", "emulator"]
    assert command[command.index("--seed") + 1] == str(tmp_path / "s.json")
    assert command[command.index("--faults") + 1] == "latency:1"


def test_sigint_also_stops_it_cleanly(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 10
    while process.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.stop() == 0
