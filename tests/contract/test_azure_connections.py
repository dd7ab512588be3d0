"""The adapter keeps its HTTPS connections: one TLS connection for many calls, custom CA included.

A CA file given as azure-core's ``connection_verify`` makes a new SSL context per request, and
aiohttp then never reuses a connection. The emulator's access log names each request's peer
address, and distinct peers are distinct TCP (so TLS) connections.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from contract_backends import emulator_config, start_emulator

from elasticsan_snapshotter.azure.client import ElasticSanAzure
from elasticsan_snapshotter.domain.identity import ElasticSanId

pytestmark = pytest.mark.integration

CALLS = 40


async def test_one_tls_connection_serves_many_calls_with_a_custom_ca(tmp_path: Path) -> None:
    access_log = tmp_path / "access.jsonl"
    process = await asyncio.to_thread(start_emulator, tmp_path / "emulator", "--access-log", str(access_log))
    try:
        config = emulator_config(process.info)
        assert config.ca_bundle  # the emulator's own CA, as ESS_CA_BUNDLE would give it
        adapter = ElasticSanAzure(config)
        group = ElasticSanId(process.info.subscription_id, "rg", "contract").volume_group("vg1")
        try:
            volume = group.volume("vol1")
            await adapter.create_volume(volume, 10)
            for _ in range(CALLS):
                await adapter.get_volume(volume)
        finally:
            await adapter.close()
    finally:
        await asyncio.to_thread(process.stop)
    entries = [json.loads(line) for line in access_log.read_text().splitlines()]
    ours = [e for e in entries if e["kind"] != "admin"]
    gets = [e for e in ours if e["method"] == "GET" and e["kind"] == "volumes"]
    assert len(gets) >= CALLS
    assert any(e["kind"] == "token" for e in ours)  # the credential's request is in the count too
    peers = {e["peer"] for e in ours}
    assert len(peers) == 1, f"{len(ours)} requests over {len(peers)} connections"
