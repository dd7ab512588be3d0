"""One HTTPS connection pool for the management clients and the credential.

Given a CA file as ``connection_verify``, azure-core's aiohttp transport builds a
new SSL context for every request, and aiohttp keys its pooled connections by
that context: no connection is ever reused, every call pays a TLS handshake and
sockets pile up. Here the CA file is read once into one SSL context, set on one
connector, and every pipeline of the adapter sends through that one session.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import aiohttp

# The package resolves this name lazily, which hides its type; the module is where it lives.
from azure.core.pipeline.transport._aiohttp import AioHttpTransport

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def proxies_in_environment() -> bool:
    return any(os.environ.get(name) for name in PROXY_VARIABLES)


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """The system roots plus ``ca_bundle``; ``True`` (aiohttp's default context) without one."""
    if not ca_bundle:
        return True
    return ssl.create_default_context(cafile=ca_bundle)


class SharedSession:
    """A lazily opened aiohttp session (it needs the running loop), closed by its owner."""

    def __init__(self, ca_bundle: str | None) -> None:
        self._ssl = ssl_context(ca_bundle)
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                # azure-core's async transport takes proxies from the environment through aiohttp's
                # trust_env. That also makes aiohttp look for ~/.netrc in a worker thread on every
                # request, so it is on only when a proxy is configured (ARM uses bearer tokens,
                # never netrc). No cookies; bodies left as sent (azure-core decompresses itself).
                trust_env=proxies_in_environment(),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    def transport(self) -> SharedTransport:
        return SharedTransport(self)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SharedTransport(AioHttpTransport):
    """An azure-core transport over a ``SharedSession``; closing a client leaves the session open."""

    def __init__(self, shared: SharedSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shared = shared

    async def open(self) -> None:
        if self.session is None:
            self.session = self._shared.get()
        await super().open()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        # The session belongs to the adapter, which closes it after every client.
        self.session = None


__all__ = ["PROXY_VARIABLES", "SharedSession", "SharedTransport", "proxies_in_environment", "ssl_context"]
