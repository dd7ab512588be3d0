"""The adapter's shared HTTPS session: environment proxies honoured, no netrc lookup per request otherwise."""

from __future__ import annotations

import pytest

from elasticsan_snapshotter.azure.transport import PROXY_VARIABLES, SharedSession

pytestmark = pytest.mark.unit


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_proxies")
async def test_without_a_proxy_the_session_does_not_consult_the_environment() -> None:
    # trust_env makes aiohttp hop to a worker thread for ~/.netrc on every request.
    shared = SharedSession(None)
    try:
        assert shared.get().trust_env is False
        assert shared.get() is shared.get()  # one session for every pipeline
    finally:
        await shared.close()


@pytest.mark.usefixtures("no_proxies")
async def test_a_proxy_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    shared = SharedSession(None)
    try:
        assert shared.get().trust_env is True
    finally:
        await shared.close()
