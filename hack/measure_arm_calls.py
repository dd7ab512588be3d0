#!/usr/bin/env python3
"""Measure the ARM reads and writes the Azure adapter makes per snapshot create and delete.

Starts the local emulator, drives ``ElasticSanAzure`` through each scenario and reads
the emulator's request counters (``/_emulator/counters``). Reads are GETs (lookups and
long-running-operation polls); writes are PUT, PATCH, POST and DELETE. Token requests
are not ARM calls and are left out.

    .venv/bin/python hack/measure_arm_calls.py            # a Markdown table
    .venv/bin/python hack/measure_arm_calls.py --json     # the same as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from elasticsan_snapshotter.azure.client import ElasticSanAzure
from elasticsan_snapshotter.azure.config import AzureConfig, PacingConfig, RetryConfig
from elasticsan_snapshotter.domain.errors import Throttled
from elasticsan_snapshotter.domain.identity import ElasticSanId, SnapshotId, VolumeGroupId, VolumeId
from elasticsan_snapshotter.emulator.process import (
    MANAGEMENT_SCOPE,
    AdminClient,
    EmulatorInfo,
    EmulatorProcess,
)

RETRY_STATUS = 3
WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})
NOT_ARM = frozenset({"token", "openid"})
SEED = {
    "elasticSans": [
        {
            "resourceGroup": "rg",
            "name": "measure",
            "location": "westeurope",
            "baseSizeTiB": 1,
            "extendedCapacitySizeTiB": 0,
            "sku": "Premium_LRS",
            "volumeGroups": [{"name": "vg1", "volumes": []}],
        }
    ]
}


@dataclass
class Row:
    scenario: str
    lro_seconds: float
    reads: int
    writes: int
    detail: str


def adapter_for(
    info: EmulatorInfo, pacing: PacingConfig | None = None, polling_interval: float | None = None
) -> ElasticSanAzure:
    extra = {} if polling_interval is None else {"polling_interval": polling_interval}
    return ElasticSanAzure(
        AzureConfig(
            subscription_id=info.subscription_id,
            arm_endpoint=info.endpoint,
            authority_host=info.authority,
            ca_bundle=info.ca_cert,
            tenant_id=info.tenant_id,
            client_id=info.client_id,
            client_secret=info.client_secret,
            credential_scopes=(MANAGEMENT_SCOPE,),
            retry=RetryConfig(status=RETRY_STATUS),
            pacing=pacing or PacingConfig(snapshots_per_volume=1000),
            **extra,
        )
    )


def tally(admin: AdminClient) -> tuple[int, int, str]:
    reads = writes = 0
    parts: list[str] = []
    for entry in admin.counters():
        if entry["kind"] in NOT_ARM:
            continue
        count = int(entry["count"])
        if entry["method"] in WRITES:
            writes += count
        else:
            reads += count
        parts.append(f"{entry['method']} {entry['kind']} {entry['status']} x{count}")
    return reads, writes, "; ".join(parts)


class Measurement:
    def __init__(self, process: EmulatorProcess) -> None:
        self.process = process
        self.admin = process.admin
        self.group = VolumeGroupId(ElasticSanId(process.info.subscription_id, "rg", "measure"), "vg1")
        self.rows: list[Row] = []

    def names(self) -> tuple[VolumeId, SnapshotId]:
        suffix = uuid.uuid4().hex[:8]
        return self.group.volume(f"vol-{suffix}"), self.group.snapshot(f"snap-{suffix}")

    async def run(
        self,
        scenario: str,
        lro_seconds: float,
        prepare: Callable[[ElasticSanAzure, VolumeId, SnapshotId], Awaitable[None]],
        act: Callable[[ElasticSanAzure, VolumeId, SnapshotId], Awaitable[None]],
        faults: str | None = None,
    ) -> None:
        volume, snapshot = self.names()
        async with adapter_for(self.process.info) as adapter:
            await adapter.create_volume(volume, 10)
            await prepare(adapter, volume, snapshot)
            await asyncio.to_thread(self.admin.update_settings, lroSeconds=lro_seconds)
            if faults:
                await asyncio.to_thread(self.admin.set_faults, faults)
            await asyncio.to_thread(self.admin.reset_counters)
            await act(adapter, volume, snapshot)
            reads, writes, detail = await asyncio.to_thread(tally, self.admin)
            await asyncio.to_thread(self.admin.clear_faults)
            await asyncio.to_thread(self.admin.update_settings, lroSeconds=0)
        self.rows.append(Row(scenario, lro_seconds, reads, writes, detail))


async def nothing(adapter: ElasticSanAzure, volume: VolumeId, snapshot: SnapshotId) -> None:
    return None


async def create(adapter: ElasticSanAzure, volume: VolumeId, snapshot: SnapshotId) -> None:
    await adapter.create_snapshot(snapshot, volume)


async def create_after_throttled(adapter: ElasticSanAzure, volume: VolumeId, snapshot: SnapshotId) -> None:
    # The first call gives up after azure-core's retries; the caller tries again later.
    with contextlib.suppress(Throttled):
        await adapter.create_snapshot(snapshot, volume)
    await adapter.create_snapshot(snapshot, volume)


async def delete(adapter: ElasticSanAzure, volume: VolumeId, snapshot: SnapshotId) -> None:
    await adapter.delete_snapshot(snapshot)


async def scenarios(process: EmulatorProcess) -> list[Row]:
    m = Measurement(process)
    storm = f"put:volumeSnapshots:429:1.0:{RETRY_STATUS}"
    long_storm = f"put:volumeSnapshots:429:1.0:{RETRY_STATUS + 2}"
    delete_storm = f"delete:volumeSnapshots:429:1.0:{RETRY_STATUS}"
    for lro in (0.0, 3.0):
        await m.run("create snapshot", lro, nothing, create)
        await m.run("create snapshot again (adopt)", lro, create, create)
        await m.run(f"create snapshot, {RETRY_STATUS} x 429 absorbed by retries", lro, nothing, create, storm)
        await m.run(
            f"create snapshot, {RETRY_STATUS + 2} x 429: Throttled, then a retry",
            lro,
            nothing,
            create_after_throttled,
            long_storm,
        )
        await m.run("delete snapshot", lro, create, delete)
        await m.run("delete snapshot already gone", lro, nothing, delete)
        await m.run(
            f"delete snapshot, {RETRY_STATUS} x 429 absorbed by retries", lro, create, delete, delete_storm
        )
    return m.rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| scenario | LRO duration | ARM reads | ARM writes | requests (method kind status x count) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.lro_seconds:g} s | {row.reads} | {row.writes} | {row.detail} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="measure-arm-") as tmp:
        state = Path(tmp)
        seed = state / "seed.json"
        seed.write_text(json.dumps(SEED), encoding="utf-8")
        with EmulatorProcess(state / "emulator", seed=seed) as process:
            rows = asyncio.run(scenarios(process))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
