"""Which credential the adapter builds, for which cloud, and what it trusts."""

from __future__ import annotations

import pytest
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from elasticsan_snapshotter.azure.config import AzureConfig
from elasticsan_snapshotter.azure.credentials import (
    CredentialKind,
    build_credential,
    credential_kind,
    credential_kwargs,
    instance_discovery_disabled,
)

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
EMULATOR = AzureConfig(
    subscription_id=SUB,
    arm_endpoint="https://127.0.0.1:8443",
    authority_host="https://127.0.0.1:8443",
    ca_bundle="/tmp/emulator-ca.pem",
    tenant_id="tenant",
    client_id="client",
    client_secret="s3cr3t",
)


def test_public_cloud_defaults() -> None:
    config = AzureConfig(subscription_id=SUB)
    assert config.base_url == "https://management.azure.com/"
    assert config.scopes == ("https://management.azure.com/.default",)
    assert config.connection_verify is True
    assert credential_kind(config) is CredentialKind.DEFAULT
    assert credential_kwargs(config) == {}


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net/.default"),
        ("https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
        ("https://localhost:8443/", "https://localhost:8443/.default"),
    ],
)
def test_scopes_follow_the_arm_endpoint(endpoint: str, scope: str) -> None:
    config = AzureConfig(subscription_id=SUB, arm_endpoint=endpoint)
    assert config.scopes == (scope,)
    assert config.base_url.endswith("/")
    assert config.base_url.startswith(endpoint.rstrip("/"))


def test_explicit_scopes_win() -> None:
    config = AzureConfig(subscription_id=SUB, credential_scopes=("https://example/.default",))
    assert config.scopes == ("https://example/.default",)


@pytest.mark.parametrize("field", ["arm_endpoint", "authority_host"])
def test_plain_http_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="https"):
        AzureConfig(subscription_id=SUB, **{field: "http://127.0.0.1:8080"})  # type: ignore[arg-type]


def test_the_secret_never_shows_in_repr() -> None:
    assert "s3cr3t" not in repr(EMULATOR)


def test_emulator_settings_select_a_client_secret_without_instance_discovery() -> None:
    assert credential_kind(EMULATOR) is CredentialKind.CLIENT_SECRET
    assert instance_discovery_disabled(EMULATOR)
    assert credential_kwargs(EMULATOR) == {
        "authority": "https://127.0.0.1:8443",
        "connection_verify": "/tmp/emulator-ca.pem",
        "disable_instance_discovery": True,
    }


@pytest.mark.parametrize(
    ("authority", "disabled"),
    [
        (None, False),
        ("https://login.microsoftonline.us", False),
        ("https://login.chinacloudapi.cn", False),
        ("https://login.microsoftonline.com", False),
        ("https://login.sovereign.example", True),
    ],
)
def test_instance_discovery_only_for_authorities_entra_knows(authority: str | None, disabled: bool) -> None:
    config = AzureConfig(subscription_id=SUB, authority_host=authority)
    assert instance_discovery_disabled(config) is disabled


def test_instance_discovery_can_be_forced() -> None:
    config = AzureConfig(
        subscription_id=SUB, authority_host="https://idp.example", disable_instance_discovery=False
    )
    assert not instance_discovery_disabled(config)


def test_a_secret_without_tenant_and_client_is_refused() -> None:
    config = AzureConfig(subscription_id=SUB, client_secret="x")
    with pytest.raises(ValueError, match="tenant_id and client_id"):
        credential_kind(config)
    with pytest.raises(ValueError, match="tenant_id and client_id"):
        build_credential(config)


async def test_build_client_secret_credential_for_the_emulator() -> None:
    credential = build_credential(EMULATOR)
    try:
        assert isinstance(credential, ClientSecretCredential)
    finally:
        await credential.close()


async def test_build_default_credential_for_production(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workload identity comes through DefaultAzureCredential from the webhook's environment.
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")
    config = AzureConfig(
        subscription_id=SUB, client_id="client", authority_host="https://login.microsoftonline.us"
    )
    credential = build_credential(config)
    try:
        assert isinstance(credential, DefaultAzureCredential)
        names = [type(c).__name__ for c in credential.credentials]
        assert "WorkloadIdentityCredential" in names
    finally:
        await credential.close()
