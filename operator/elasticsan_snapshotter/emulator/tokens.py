"""The Entra ID endpoints azure-identity calls, and checking the bearer tokens they issue.

Tokens are opaque random strings; the emulator remembers who holds each one and until when.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from elasticsan_snapshotter.emulator.errors import ArmError, json_response
from elasticsan_snapshotter.emulator.state import Store

CONTRIBUTOR = "contributor"
READER = "reader"
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Principal:
    client_id: str
    role: str


class TokenService:
    def __init__(self, store: Store, lifetime: int, federated_token: str | None) -> None:
        self.store = store
        self.lifetime = lifetime
        self.federated_token = federated_token

    @property
    def tenant_id(self) -> str:
        return self.store.identity["tenant_id"]

    def _principals(self) -> dict[str, tuple[str, str]]:
        ident = self.store.identity
        return {
            ident["client_id"]: (ident["client_secret"], CONTRIBUTOR),
            ident["reader_client_id"]: (ident["reader_client_secret"], READER),
        }

    # HTTP endpoints --------------------------------------------------------------------

    def openid_configuration(self, base_url: str, tenant: str) -> web.Response:
        if tenant.lower() != self.tenant_id.lower():
            return _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
        root = f"{base_url}/{tenant}"
        return json_response(
            {
                "issuer": f"{root}/v2.0",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base_url}/{tenant}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "response_types_supported": ["code", "id_token", "token"],
                "tenant_region_scope": "EU",
            }
        )

    def token(self, tenant: str, form: dict[str, str]) -> web.Response:
        if tenant.lower() != self.tenant_id.lower():
            return _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "AADSTS70003: only client_credentials.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return _oauth_error(400, "invalid_scope", f"AADSTS1002012: scope '{scope}' is not valid.")
        client_id = form.get("client_id", "")
        principals = self._principals()
        if client_id not in principals:
            return _oauth_error(
                400, "unauthorized_client", f"AADSTS700016: Application '{client_id}' was not found."
            )
        secret, role = principals[client_id]
        if "client_assertion" in form:
            if not self._assertion_ok(form):
                return _oauth_error(401, "invalid_client", "AADSTS700211: invalid client assertion.")
        elif form.get("client_secret") != secret:
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        return json_response(self.issue(client_id, role))

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        assertion = form.get("client_assertion", "")
        if form.get("client_assertion_type") != _ASSERTION_TYPE or not assertion.strip():
            return False
        if self.federated_token is None:
            return True
        # The SDK sends the file verbatim, trailing newline included.
        return assertion.strip() == self.federated_token.strip()

    # Token bookkeeping -----------------------------------------------------------------

    def issue(self, client_id: str, role: str) -> dict[str, Any]:
        now = time.time()
        self._prune(now)
        value = secrets.token_urlsafe(32)
        self.store.tokens[value] = {"client_id": client_id, "role": role, "expires_at": now + self.lifetime}
        # Persisted so that clients holding a token keep working across a restart.
        self.store.save()
        return {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": value,
        }

    def _prune(self, now: float) -> None:
        expired = [k for k, v in self.store.tokens.items() if v["expires_at"] < now - 60]
        for key in expired:
            del self.store.tokens[key]

    def revoke_all(self) -> int:
        count = len(self.store.tokens)
        self.store.tokens.clear()
        self.store.save()
        return count

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an Authorization header, or an ARM 401."""
        if not authorization:
            raise _unauthenticated(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthenticated(
                "AuthenticationFailedInvalidHeader",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        entry = self.store.tokens.get(value.strip())
        if entry is None:
            raise _unauthenticated(
                "InvalidAuthenticationToken", "The access token is invalid or has been revoked."
            )
        if entry["expires_at"] <= time.time():
            raise _unauthenticated("ExpiredAuthenticationToken", "The access token has expired.")
        return Principal(client_id=entry["client_id"], role=entry["role"])


def _unauthenticated(code: str, message: str) -> ArmError:
    # ARM sends a challenge with every 401; without "claims" azure-core does not retry it.
    return ArmError(
        401,
        code,
        message,
        headers={
            "WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="{message}"'
        },
    )


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, status=status)
