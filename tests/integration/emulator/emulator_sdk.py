"""Real SDK clients pointed at an emulator, and small builders the emulator tests share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import Volume

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess

# Poll every 50 ms instead of waiting a second per long-running operation.
StartEmulator = Callable[..., EmulatorProcess]
"""Starts an emulator with extra flags (the ``start_emulator`` fixture)."""

FAST_FLAGS = ("--lro-retry-after", "0", "--throttle-retry-after", "0", "--export-seconds", "1")
POLL = 0.05
LOCATION = "westeurope"


def credential(info: EmulatorInfo, *, reader: bool = False) -> ClientSecretCredential:
    return ClientSecretCredential(
        info.tenant_id,
        info.reader_client_id if reader else info.client_id,
        info.reader_client_secret if reader else info.client_secret,
        authority=info.authority,
        disable_instance_discovery=True,
        connection_verify=info.ca_cert,
    )


def async_credential(info: EmulatorInfo) -> AsyncClientSecretCredential:
    return AsyncClientSecretCredential(
        info.tenant_id,
        info.client_id,
        info.client_secret,
        authority=info.authority,
        disable_instance_discovery=True,
        connection_verify=info.ca_cert,
    )


def elasticsan_client(info: EmulatorInfo, cred: Any, **kwargs: Any) -> ElasticSanMgmtClient:
    return ElasticSanMgmtClient(
        cred,
        info.subscription_id,
        base_url=info.endpoint,
        connection_verify=info.ca_cert,
        polling_interval=POLL,
        **kwargs,
    )


def compute_client(info: EmulatorInfo, cred: Any, **kwargs: Any) -> ComputeManagementClient:
    return ComputeManagementClient(
        cred,
        info.subscription_id,
        base_url=info.endpoint,
        connection_verify=info.ca_cert,
        polling_interval=POLL,
        **kwargs,
    )


@dataclass
class Layout:
    """A SAN with one volume group and one volume, created through the SDK."""

    rg: str
    san: str
    group: str
    volume: Volume

    @property
    def volume_id(self) -> str:
        assert self.volume.id is not None
        return self.volume.id


def make_san(
    client: ElasticSanMgmtClient,
    rg: str,
    *,
    san: str = "san1",
    location: str = LOCATION,
    base_tib: int = 1,
    extended_tib: int = 0,
) -> None:
    client.elastic_sans.begin_create(
        rg,
        san,
        {
            "location": location,
            "properties": {
                "sku": {"name": "Premium_LRS"},
                "baseSizeTiB": base_tib,
                "extendedCapacitySizeTiB": extended_tib,
            },
        },
    ).result()


def make_layout(
    client: ElasticSanMgmtClient,
    rg: str,
    *,
    size_gib: int = 10,
    location: str = LOCATION,
    base_tib: int = 1,
    extended_tib: int = 0,
    san: str = "san1",
) -> Layout:
    make_san(client, rg, san=san, location=location, base_tib=base_tib, extended_tib=extended_tib)
    client.volume_groups.begin_create(rg, san, "vg1", {}).result()
    volume = client.volumes.begin_create(
        rg, san, "vg1", "vol1", {"properties": {"sizeGiB": size_gib}}
    ).result()
    return Layout(rg=rg, san=san, group="vg1", volume=volume)


def snapshot_body(volume_id: str) -> dict[str, Any]:
    return {"properties": {"creationData": {"sourceId": volume_id}}}


def export_body(snapshot_id: str, location: str = LOCATION) -> dict[str, Any]:
    return {
        "location": location,
        "sku": {"name": "Standard_LRS"},
        "properties": {
            "incremental": True,
            "creationData": {"createOption": "CopyFromSanSnapshot", "elasticSanResourceId": snapshot_id},
        },
    }
