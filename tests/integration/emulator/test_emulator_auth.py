"""Tokens: client secrets, workload identity, expiry, revocation, 401 and the read-only role."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.identity.aio import WorkloadIdentityCredential as AsyncWorkloadIdentityCredential
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.aio import ElasticSanMgmtClient as AsyncElasticSanMgmtClient
from emulator_sdk import POLL, StartEmulator, credential, elasticsan_client, make_san

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess

pytestmark = pytest.mark.integration


def _raw_admin_get(info: EmulatorInfo, token: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{info.endpoint}/_emulator/counters")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=info.ca_cert)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


class _FixedToken:
    """A credential that hands out a token the emulator never issued."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("not-a-token-from-the-emulator", int(time.time()) + 3600)


def test_requests_without_a_valid_token_get_401(info: EmulatorInfo, rg: str) -> None:
    status, body = _raw_admin_get(info, None)
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    with elasticsan_client(info, _FixedToken()) as client, pytest.raises(ClientAuthenticationError) as error:
        client.elastic_sans.get(rg, "san1")
    assert error.value.status_code == 401
    assert error.value.error is not None
    assert error.value.error.code == "InvalidAuthenticationToken"


def test_wrong_client_secret_is_refused(info: EmulatorInfo) -> None:
    with (
        ClientSecretCredential(
            info.tenant_id,
            info.client_id,
            "wrong-secret",
            authority=info.authority,
            disable_instance_discovery=True,
            connection_verify=info.ca_cert,
        ) as cred,
        pytest.raises(ClientAuthenticationError, match="AADSTS7000215"),
    ):
        cred.get_token("https://management.azure.com/.default")


def test_read_only_principal_gets_403_on_writes(
    esan: ElasticSanMgmtClient, info: EmulatorInfo, rg: str, emulator: EmulatorProcess
) -> None:
    make_san(esan, rg)
    with credential(info, reader=True) as cred, elasticsan_client(info, cred) as reader:
        assert reader.elastic_sans.get(rg, "san1").name == "san1"
        with pytest.raises(HttpResponseError) as denied:
            reader.volume_groups.begin_create(rg, "san1", "vg1", {}).result()
        with pytest.raises(HttpResponseError) as denied_delete:
            reader.elastic_sans.begin_delete(rg, "san1").result()
    assert denied.value.status_code == 403
    assert denied.value.error is not None
    assert denied.value.error.code == "AuthorizationFailed"
    assert "Microsoft.ElasticSan/elasticSans/volumeGroups/write" in str(denied.value.error.message)
    assert denied_delete.value.status_code == 403
    assert emulator.admin.count(method="PUT", kind="volumeGroups", status=403) == 1
    assert esan.elastic_sans.get(rg, "san1").provisioning_state == "Succeeded"


def test_expired_tokens_are_refused_and_clients_refresh(start_emulator: StartEmulator) -> None:
    process = start_emulator("--token-lifetime", "2")
    info = process.info
    old_token, lifetime = process.admin.token()
    assert lifetime == 2
    assert _raw_admin_get(info, old_token)[0] == 200
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        make_san(client, "rg")
        time.sleep(2.2)
        status, body = _raw_admin_get(info, old_token)
        assert status == 401
        assert body["error"]["code"] == "ExpiredAuthenticationToken"
        # The SDK fetches a new token by itself.
        assert client.elastic_sans.get("rg", "san1").name == "san1"
    assert process.admin.count(method="POST", kind="token", status=200) >= 3


def test_revoked_tokens_are_refused(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        make_san(client, "rg")
        assert process.admin.revoke_tokens() >= 1
        with pytest.raises(ClientAuthenticationError):
            client.elastic_sans.get("rg", "san1")
    with credential(info) as fresh, elasticsan_client(info, fresh) as client:
        assert client.elastic_sans.get("rg", "san1").name == "san1"


def test_workload_identity_with_a_federated_token_file(start_emulator: StartEmulator, tmp_path: Path) -> None:
    process = start_emulator("--federated-token", "expected-assertion")
    info = process.info
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("expected-assertion\n")
    bad.write_text("someone-else\n")

    def workload(path: Path) -> WorkloadIdentityCredential:
        return WorkloadIdentityCredential(
            tenant_id=info.tenant_id,
            client_id=info.client_id,
            token_file_path=str(path),
            authority=info.authority,
            connection_verify=info.ca_cert,
        )

    with workload(good) as cred, elasticsan_client(info, cred) as client:
        make_san(client, "rg")
    with workload(bad) as cred, pytest.raises(ClientAuthenticationError):
        cred.get_token("https://management.azure.com/.default")


async def test_async_workload_identity(start_emulator: StartEmulator, tmp_path: Path) -> None:
    process = start_emulator()
    info = process.info
    token_file = tmp_path / "token"
    token_file.write_text("any-projected-service-account-token")
    async with (
        AsyncWorkloadIdentityCredential(
            tenant_id=info.tenant_id,
            client_id=info.client_id,
            token_file_path=str(token_file),
            authority=info.authority,
            connection_verify=info.ca_cert,
        ) as cred,
        AsyncElasticSanMgmtClient(
            cred,
            info.subscription_id,
            base_url=info.endpoint,
            connection_verify=info.ca_cert,
            polling_interval=POLL,
        ) as client,
    ):
        body = {
            "location": "westeurope",
            "properties": {"sku": {"name": "Premium_LRS"}, "baseSizeTiB": 1, "extendedCapacitySizeTiB": 0},
        }
        san = await (await client.elastic_sans.begin_create("rg", "san1", body)).result()
        assert san.system_data is not None
        assert san.system_data.created_by == info.client_id
