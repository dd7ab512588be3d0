"""How the adapter proves who it is to Entra ID.

Production uses ``DefaultAzureCredential``: in a pod with Azure workload identity
the webhook's environment (``AZURE_FEDERATED_TOKEN_FILE`` and friends) selects
the workload identity credential; elsewhere managed identity or a developer login.
A client secret, when configured, selects ``ClientSecretCredential`` instead; the
local emulator serves that flow.

Both honour an explicit authority host (sovereign clouds, the emulator) and a CA
bundle for TLS to that authority. Secrets are never logged: the config's repr
hides them and nothing here logs at all.
"""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.identity import AzureAuthorityHosts
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from elasticsan_snapshotter.azure.config import AzureConfig

KNOWN_AUTHORITIES = frozenset(
    urlsplit(f"https://{host}").netloc.lower()
    for host in (
        AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
        AzureAuthorityHosts.AZURE_CHINA,
        AzureAuthorityHosts.AZURE_GOVERNMENT,
    )
)
"""Authorities that Entra ID instance discovery knows; anything else must skip discovery."""


class CredentialKind(enum.Enum):
    CLIENT_SECRET = "client-secret"
    DEFAULT = "default"


def credential_kind(config: AzureConfig) -> CredentialKind:
    if config.client_secret:
        if not (config.tenant_id and config.client_id):
            raise ValueError("a client secret needs tenant_id and client_id as well")
        return CredentialKind.CLIENT_SECRET
    return CredentialKind.DEFAULT


def instance_discovery_disabled(config: AzureConfig) -> bool:
    """Whether to skip Entra ID instance discovery (it would call login.microsoftonline.com)."""
    if config.disable_instance_discovery is not None:
        return config.disable_instance_discovery
    if config.authority_host is None:
        return False
    return urlsplit(config.authority_host).netloc.lower() not in KNOWN_AUTHORITIES


def credential_kwargs(config: AzureConfig) -> dict[str, Any]:
    """Keyword arguments shared by both credential kinds."""
    kwargs: dict[str, Any] = {}
    if config.authority_host is not None:
        kwargs["authority"] = config.authority_host
    if config.ca_bundle is not None:
        kwargs["connection_verify"] = config.ca_bundle
    if instance_discovery_disabled(config):
        kwargs["disable_instance_discovery"] = True
    return kwargs


def build_credential(
    config: AzureConfig, *, transport: AsyncHttpTransport[Any, Any] | None = None
) -> AsyncTokenCredential:
    """The asynchronous credential for ``config``; the caller closes it.

    ``transport``, when given, replaces the CA bundle setting: it already trusts that bundle
    (see ``azure.transport``), and its connections are shared with the management clients.
    """
    kwargs = credential_kwargs(config)
    if transport is not None:
        kwargs.pop("connection_verify", None)
        kwargs["transport"] = transport
    tenant, client, secret = config.tenant_id, config.client_id, config.client_secret
    if secret:
        if not (tenant and client):
            raise ValueError("a client secret needs tenant_id and client_id as well")
        return ClientSecretCredential(tenant, client, secret, **kwargs)
    if config.client_id is not None:
        # A user-assigned managed identity or the pod's workload identity.
        kwargs["managed_identity_client_id"] = config.client_id
        kwargs["workload_identity_client_id"] = config.client_id
    if config.tenant_id is not None:
        kwargs["workload_identity_tenant_id"] = config.tenant_id
    return DefaultAzureCredential(**kwargs)


__all__ = [
    "KNOWN_AUTHORITIES",
    "CredentialKind",
    "build_credential",
    "credential_kind",
    "credential_kwargs",
    "instance_discovery_disabled",
]
