"""Long-running operations and injected faults, as azure-core's polling and retries see them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import ProvisioningStates
from emulator_sdk import StartEmulator, credential, elasticsan_client, make_layout, make_san, snapshot_body

from elasticsan_snapshotter.emulator.faults import FaultInjector, parse_spec
from elasticsan_snapshotter.emulator.process import EmulatorProcess

pytestmark = pytest.mark.integration


def test_default_lro_headers(start_emulator: StartEmulator) -> None:
    process = start_emulator("--lro-retry-after", "1", "--lro-seconds", "0.2")
    info = process.info
    seen: list[tuple[str, int, dict[str, str]]] = []

    def hook(response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        seen.append((response.http_request.method, http.status_code, dict(http.headers)))

    with credential(info) as cred, elasticsan_client(info, cred) as client:
        started = time.monotonic()
        client.elastic_sans.begin_create(
            "rg",
            "san1",
            {
                "location": "westeurope",
                "properties": {
                    "sku": {"name": "Premium_LRS"},
                    "baseSizeTiB": 1,
                    "extendedCapacitySizeTiB": 0,
                },
            },
            raw_response_hook=hook,
        ).result()
        # The SDK polls once at once (still running), then waits Retry-After: 1, not 50 ms.
        assert time.monotonic() - started >= 1.0
    method, status, headers = seen[0]
    assert (method, status) == ("PUT", 201)
    assert headers["Retry-After"] == "1"
    assert headers["Azure-AsyncOperation"].startswith(
        f"{info.endpoint}/subscriptions/{info.subscription_id}/providers/"
    )
    assert "/asyncoperations/" in headers["Azure-AsyncOperation"]
    assert "/operationresults/" in headers["Location"]


def test_failed_lro_surfaces_the_status_error(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    emulator.admin.set_faults("put:volumeSnapshots:lro-fail:1:1")
    with pytest.raises(HttpResponseError) as failed:
        esan.volume_snapshots.begin_create(
            rg, "san1", "vg1", "doomed", snapshot_body(layout.volume_id)
        ).result()
    assert failed.value.error is not None
    assert failed.value.error.code == "InternalServerError"
    snapshot = esan.volume_snapshots.get(rg, "san1", "vg1", "doomed")
    assert snapshot.provisioning_state == ProvisioningStates.FAILED
    esan.volume_snapshots.begin_delete(rg, "san1", "vg1", "doomed").result()


def test_slow_lro_shows_transitional_states(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    make_san(esan, rg)
    esan.volume_groups.begin_create(rg, "san1", "vg1", {}).result()
    emulator.admin.set_faults("put:volumes:lro-slow=0.5:1")
    poller = esan.volumes.begin_create(rg, "san1", "vg1", "slow", {"properties": {"sizeGiB": 1}})
    during = esan.volumes.get(rg, "san1", "vg1", "slow")
    assert during.provisioning_state == ProvisioningStates.CREATING
    assert poller.result().provisioning_state == ProvisioningStates.SUCCEEDED
    emulator.admin.update_settings(lroSeconds=0.5)
    try:
        deleting = esan.volumes.begin_delete(rg, "san1", "vg1", "slow")
        assert esan.volumes.get(rg, "san1", "vg1", "slow").provisioning_state == ProvisioningStates.DELETING
        deleting.result()
    finally:
        emulator.admin.update_settings(lroSeconds=0)
    assert list(esan.volumes.list_by_volume_group(rg, "san1", "vg1")) == []


def test_throttled_put_is_retried_transparently(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    emulator.admin.set_faults("put:volumeSnapshots:429:1:1")
    emulator.admin.reset_counters()
    snapshot = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "snap1", snapshot_body(layout.volume_id)
    ).result()
    assert snapshot.provisioning_state == ProvisioningStates.SUCCEEDED
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=429) == 1
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=201) == 1
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 2


def test_server_errors_on_reads_are_retried(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    make_layout(esan, rg)
    emulator.admin.set_faults("get:volumes:500:1:2")
    emulator.admin.reset_counters()
    assert esan.volumes.get(rg, "san1", "vg1", "vol1").size_gi_b == 10
    assert emulator.admin.count(method="GET", kind="volumes", status=500) == 2
    assert emulator.admin.count(method="GET", kind="volumes", status=200) == 1


def test_connection_dropped_after_the_put_creates_one_snapshot(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    emulator.admin.set_faults("put:volumeSnapshots:drop-after:1:1")
    emulator.admin.reset_counters()
    esan.volume_snapshots.begin_create(rg, "san1", "vg1", "snap1", snapshot_body(layout.volume_id)).result()
    # The first PUT was applied but never answered; the SDK's retry found it and got 200.
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=0) == 1
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=200) == 1
    assert [s.name for s in esan.volume_snapshots.list_by_volume_group(rg, "san1", "vg1")] == ["snap1"]


def test_connection_dropped_before_the_put_is_retried(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    make_san(esan, rg)
    esan.volume_groups.begin_create(rg, "san1", "vg1", {}).result()
    emulator.admin.set_faults("put:volumes:drop:1:1")
    emulator.admin.reset_counters()
    esan.volumes.begin_create(rg, "san1", "vg1", "vol1", {"properties": {"sizeGiB": 1}}).result()
    assert emulator.admin.count(method="PUT", kind="volumes", status=0) == 1
    assert emulator.admin.count(method="PUT", kind="volumes", status=201) == 1


def test_latency_applies_to_every_arm_request(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    make_san(esan, rg)
    emulator.admin.set_faults("latency:300")
    started = time.monotonic()
    esan.elastic_sans.get(rg, "san1")
    assert time.monotonic() - started >= 0.3


def test_faults_from_a_json_file_at_start(start_emulator: StartEmulator, tmp_path: Path) -> None:
    plan = tmp_path / "faults.json"
    plan.write_text(
        json.dumps({"rules": [{"method": "put", "kind": "elasticSans", "action": "503", "count": 1}]})
    )
    process = start_emulator("--faults", str(plan))
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        make_san(client, "rg")
    assert process.admin.count(method="PUT", kind="elasticSans", status=503) == 1
    assert process.admin.count(method="PUT", kind="elasticSans", status=201) == 1


def test_fault_draws_are_reproducible() -> None:
    spec = "put:volumeSnapshots:429:0.3,get:*:500:0.1,latency:20"
    plan = parse_spec(spec)
    assert plan.latency_ms == 20

    def run() -> list[str]:
        injector = FaultInjector(parse_spec(spec), seed=42)
        out = []
        for index in range(200):
            rule = injector.decide("PUT" if index % 2 else "GET", "volumeSnapshots")
            out.append(rule.action if rule else "-")
        return out

    first = run()
    assert first == run()
    assert 0 < first.count("429") < 100
    assert 0 < first.count("500") < 100


def test_a_fault_plan_with_a_seed_restarts_the_draws(emulator: EmulatorProcess) -> None:
    spec = "put:volumeSnapshots:429:0.2"
    injector = FaultInjector(parse_spec(spec), seed=0)

    def draws() -> list[bool]:
        return [injector.decide("PUT", "volumeSnapshots") is not None for _ in range(60)]

    first = draws()
    assert first != draws()  # without a seed the draws go on
    injector.replace(parse_spec(spec), seed=0)
    assert draws() == first
    # Through the admin API, as a benchmark sets the same faults for each arm.
    emulator.admin.set_faults(spec, seed=3)
    emulator.admin.set_faults(spec, seed=3)
    assert emulator.admin.request("GET", "faults")["rules"][0]["probability"] == 0.2


@pytest.mark.parametrize(
    "spec", ["put:volumes:999:1", "put:volumes:429", "fetch:*:500:1", "put:*:500:2", "put:*:lro-slow=x:1"]
)
def test_bad_fault_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by mistake
        parse_spec(spec)
