"""Fixtures for operator tests: the emulator seeded with an Elastic SAN, and the operator process.

The operator runs as its real CLI against the real local control plane and the
emulator, through the real Azure SDKs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from kubernetes import client as k8s
from operator_scenario import FAST, RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, StartOperator

from elasticsan_snapshotter.demo import operator_env
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import LocalCluster
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[EmulatorProcess]:
    """The emulator; a test module may add flags in ``EMULATOR_ARGS``."""
    state = tmp_path_factory.mktemp("emulator")
    seed = state / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "elasticSans": [
                    {
                        "resourceGroup": RESOURCE_GROUP,
                        "name": SAN,
                        "location": "westeurope",
                        "baseSizeTiB": 4,
                        "extendedCapacitySizeTiB": 0,
                        "volumeGroups": [{"name": VOLUME_GROUP, "volumes": []}],
                    }
                ]
            }
        )
    )
    extra = tuple(getattr(request.module, "EMULATOR_ARGS", ()))
    process = EmulatorProcess(state / "state", seed=seed, extra_args=(*FAST, *extra))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def esan(emulator: EmulatorProcess) -> Iterator[ElasticSanMgmtClient]:
    info = emulator.info
    credential = ClientSecretCredential(
        info.tenant_id,
        info.client_id,
        info.client_secret,
        authority=info.authority,
        disable_instance_discovery=True,
        connection_verify=info.ca_cert,
    )
    client = ElasticSanMgmtClient(
        credential,
        info.subscription_id,
        base_url=info.endpoint,
        connection_verify=info.ca_cert,
        polling_interval=0.1,
    )
    with credential, client:
        yield client


@pytest.fixture(scope="module")
def san_id(emulator: EmulatorProcess) -> str:
    return (
        f"/subscriptions/{emulator.info.subscription_id}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.ElasticSan/elasticSans/{SAN}"
    )


@pytest.fixture(scope="module")
def start_operator(
    emulator: EmulatorProcess, cluster: LocalCluster, san_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartOperator]:
    started: list[OperatorProcess] = []
    logs = tmp_path_factory.mktemp("operator-logs")

    def start(**env: str) -> OperatorProcess:
        process = OperatorProcess(
            operator_env(emulator.info, cluster.kubeconfig, san_id, **env),
            logs / f"operator-{len(started)}.log",
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def operator(start_operator: StartOperator) -> OperatorProcess:
    return start_operator()


@pytest.fixture
def kube(api_client: k8s.ApiClient) -> Kube:
    return Kube(api_client)


@pytest.fixture
def source_volume(esan: ElasticSanMgmtClient) -> Callable[..., Any]:
    """Create an Elastic SAN volume through the SDK; returns the SDK model."""

    def create(size_gib: int = 10) -> Any:
        name = f"vol-{uuid.uuid4().hex[:8]}"
        poller = esan.volumes.begin_create(
            RESOURCE_GROUP, SAN, VOLUME_GROUP, name, {"properties": {"sizeGiB": size_gib}}
        )
        return poller.result()

    return create
