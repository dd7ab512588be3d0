"""Thousands of kept operations: every request still succeeds, and every answer is JSON."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from emulator_sdk import StartEmulator, credential, elasticsan_client, make_layout

from elasticsan_snapshotter.emulator.process import EmulatorInfo

pytestmark = pytest.mark.integration

OPERATIONS = 3000
CONCURRENCY = 4


async def _hammer(info: EmulatorInfo, token: str, volume_url: str) -> list[tuple[int, str]]:
    context = ssl.create_default_context(cafile=info.ca_cert)
    headers = {"Authorization": f"Bearer {token}"}
    answers: list[tuple[int, str]] = []
    todo = iter(range(OPERATIONS))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=headers) as http:

        async def worker() -> None:
            for _ in todo:
                # A PUT on an existing volume is an update: one long-running operation each.
                async with http.put(volume_url, json={"properties": {"sizeGiB": 10}}) as put:
                    await put.read()
                    answers.append((put.status, put.content_type))
                    status_url = put.headers.get("Azure-AsyncOperation")
                if status_url:
                    async with http.get(status_url) as poll:
                        await poll.read()
                        answers.append((poll.status, poll.content_type))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answers


def test_thousands_of_operations_are_all_answered_in_json(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        layout = make_layout(client, "rg")
        token = cred.get_token("https://management.azure.com/.default").token
    assert layout.volume.id is not None
    api_version = info.raw["elasticsan_api_version"]
    url = f"{info.endpoint}{layout.volume.id}?api-version={api_version}"
    answers = asyncio.run(_hammer(info, token, url))
    failures = [a for a in answers if a[0] >= 400]
    assert not failures, f"{len(failures)} failed answers, first {failures[0]}"
    assert len(answers) == 2 * OPERATIONS
    assert {content_type for _, content_type in answers} == {"application/json"}
