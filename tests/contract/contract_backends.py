"""The two backends of the Azure port contract suite, and what a test needs around them.

Every contract test takes the ``backend`` fixture and runs twice: against ``InMemoryAzure`` (marked
unit) and against ``ElasticSanAzure`` talking to the emulator over HTTPS (marked
integration). Both start from the same layout of Elastic SANs and volume groups; each
test makes its own volumes with unique names, so tests do not see each other's data
even though the emulator lives for the whole session.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from elasticsan_snapshotter.azure.client import ElasticSanAzure
from elasticsan_snapshotter.azure.config import AzureConfig, PacingConfig, RetryConfig
from elasticsan_snapshotter.azure.fake import InMemoryAzure, ManualClock
from elasticsan_snapshotter.domain.decisions import SNAPSHOT_RATE_LIMIT
from elasticsan_snapshotter.domain.errors import Forbidden, Throttled, Transient
from elasticsan_snapshotter.domain.identity import ElasticSanId, SnapshotId, VolumeGroupId, VolumeId
from elasticsan_snapshotter.domain.ports import AzurePort
from elasticsan_snapshotter.emulator.process import MANAGEMENT_SCOPE, EmulatorInfo, EmulatorProcess

SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
LOCATION = "westeurope"
OTHER_LOCATION = "northeurope"
EXPORT_SECONDS = 2.0
EMULATOR_SNAPSHOT_LIMIT = 3
"""The emulator runs with a low per-volume snapshot maximum, so reaching it takes 3 creates, not 200."""
RETRY_STATUS = 3
"""azure-core retries a 429/5xx this many times before the adapter sees it."""
EMULATOR_SNAPSHOT_RATE = 4
"""New snapshots per volume per 5 minutes at the emulator, and the adapter's pace to match: more than
the snapshot maximum, so filling a volume is never throttled."""


@dataclass(frozen=True)
class SanLayout:
    name: str
    base_tib: int
    location: str
    volume_groups: tuple[str, ...]


LAYOUT = (
    SanLayout("contract", 8, LOCATION, ("vg1", "vg-list")),
    SanLayout("tiny", 1, LOCATION, ("vg1",)),
    SanLayout("faraway", 1, OTHER_LOCATION, ("vg1",)),
)


def seed_document() -> dict[str, object]:
    return {
        "elasticSans": [
            {
                "resourceGroup": "rg",
                "name": san.name,
                "location": san.location,
                "baseSizeTiB": san.base_tib,
                "extendedCapacitySizeTiB": 0,
                "sku": "Premium_LRS",
                "volumeGroups": [{"name": vg, "volumes": []} for vg in san.volume_groups],
            }
            for san in LAYOUT
        ]
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Backend(ABC):
    """One implementation of the port plus the knobs a test needs around it."""

    name: str
    port: AzurePort
    subscription: str
    snapshot_limit: int
    snapshot_rate: int
    """New snapshots per volume the service takes in 5 minutes."""

    def san(self, name: str = "contract") -> ElasticSanId:
        return ElasticSanId(self.subscription, "rg", name)

    def volume_group(self, san: str = "contract", name: str = "vg1") -> VolumeGroupId:
        return self.san(san).volume_group(name)

    def new_volume(self, san: str = "contract", group: str = "vg1") -> VolumeId:
        return self.volume_group(san, group).volume(unique("vol"))

    def new_snapshot(self, volume: VolumeId) -> SnapshotId:
        return volume.volume_group.snapshot(unique("snap"))

    @property
    def is_emulator(self) -> bool:
        return isinstance(self, EmulatorBackend)

    @abstractmethod
    async def elapse(self, seconds: float) -> None:
        """Let time pass for the backend (the fake's clock, or the wall clock)."""

    @abstractmethod
    async def set_written(self, volume: VolumeId, gib: int) -> None:
        """Declare data written to ``volume`` since its last snapshot."""

    @abstractmethod
    async def fill_snapshots(self, volume: VolumeId) -> None:
        """Bring ``volume`` to its maximum number of snapshots."""

    @abstractmethod
    async def throttle_snapshot_puts(self, storm: int) -> None:
        """The next ``storm`` snapshot PUTs are answered 429 with ``Retry-After: 1``."""

    @abstractmethod
    async def fail_reads_of_volumes(self, status: int, times: int) -> None:
        """The next ``times`` volume GETs are answered with ``status``."""

    @abstractmethod
    async def throttled_snapshot_puts(self) -> int:
        """Snapshot PUTs answered 429 since the test began, retried ones included."""

    @abstractmethod
    async def failed_volume_reads(self, status: int) -> int:
        """Volume GETs answered with ``status`` since the test began, retried ones included."""

    @abstractmethod
    def read_only_port(self) -> AbstractAsyncContextManager[AzurePort]:
        """A port whose identity may read but not write."""


class FakeBackend(Backend):
    def __init__(self) -> None:
        self.name = "fake"
        self.subscription = SUBSCRIPTION
        self.clock = ManualClock()
        self.fake = InMemoryAzure(clock=self.clock, export_seconds=EXPORT_SECONDS, default_location=LOCATION)
        self.port = self.fake
        self.snapshot_limit = 200
        self.snapshot_rate = SNAPSHOT_RATE_LIMIT
        for san in LAYOUT:
            info = self.fake.add_elastic_san(
                self.san(san.name), location=san.location, base_size_tib=san.base_tib
            )
            for vg in san.volume_groups:
                self.fake.add_volume_group(info.id.volume_group(vg))

    async def elapse(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def set_written(self, volume: VolumeId, gib: int) -> None:
        self.fake.set_written(volume, gib)

    async def fill_snapshots(self, volume: VolumeId) -> None:
        # Seeding skips the rate limit, which would otherwise make this take 29 windows.
        for _ in range(self.snapshot_limit):
            self.fake.add_snapshot(self.new_snapshot(volume), volume)

    async def throttle_snapshot_puts(self, storm: int) -> None:
        # The fake has no SDK underneath; it absorbs RETRY_STATUS failed answers per call as azure-core does.
        throttled = Throttled("injected 429 storm", retry_after=1.0)
        self.fake.fail_answers("create_snapshot", throttled, answers=storm, retries=RETRY_STATUS)

    async def fail_reads_of_volumes(self, status: int, times: int) -> None:
        self.fake.fail_answers(
            "get_volume", Transient(f"injected {status}"), answers=times, retries=RETRY_STATUS
        )

    async def throttled_snapshot_puts(self) -> int:
        return self.fake.failed_answers["create_snapshot"]

    async def failed_volume_reads(self, status: int) -> int:
        return self.fake.failed_answers["get_volume"]  # the fake has no status codes, only the error

    @asynccontextmanager
    async def read_only_port(self) -> AsyncIterator[AzurePort]:
        for operation in ("create_snapshot", "delete_snapshot", "create_volume", "delete_volume"):
            self.fake.fail_next(operation, Forbidden("the reader role may not write"), times=None)
        try:
            yield self.fake
        finally:
            self.fake.clear_faults()


def emulator_config(
    info: EmulatorInfo, *, reader: bool = False, pacing: PacingConfig | None = None
) -> AzureConfig:
    return AzureConfig(
        subscription_id=info.subscription_id,
        arm_endpoint=info.endpoint,
        authority_host=info.authority,
        ca_bundle=info.ca_cert,
        tenant_id=info.tenant_id,
        client_id=info.reader_client_id if reader else info.client_id,
        client_secret=info.reader_client_secret if reader else info.client_secret,
        # The emulator, like a real token service, issues tokens for the ARM audience.
        credential_scopes=(MANAGEMENT_SCOPE,),
        polling_interval=0.2,
        retry=RetryConfig(status=RETRY_STATUS, backoff_factor=0.05, backoff_max=1.0),
        max_snapshots_per_volume=EMULATOR_SNAPSHOT_LIMIT,
        # The per-volume snapshot pace of the service; breaking it fails at once (no 5-minute wait).
        pacing=pacing
        or PacingConfig(
            snapshots_per_volume=EMULATOR_SNAPSHOT_RATE,
            max_snapshot_queue_seconds=0.0,
            write_rate_per_second=100.0,
            write_burst=100,
        ),
    )


class EmulatorBackend(Backend):
    def __init__(self, emulator: EmulatorProcess) -> None:
        self.name = "emulator"
        self.emulator = emulator
        self.info = emulator.info
        self.subscription = self.info.subscription_id
        self.adapter = ElasticSanAzure(emulator_config(self.info))
        self.port = self.adapter
        self.snapshot_limit = EMULATOR_SNAPSHOT_LIMIT
        self.snapshot_rate = EMULATOR_SNAPSHOT_RATE

    async def admin_call(self, name: str, *args: object, **kwargs: object) -> object:
        # The admin client is synchronous (urllib); keep the event loop free while it runs.
        return await asyncio.to_thread(getattr(self.emulator.admin, name), *args, **kwargs)

    async def count(
        self, *, method: str | None = None, kind: str | None = None, status: int | None = None
    ) -> int:
        """Requests the emulator saw since the test began, matching every given field."""
        admin = self.emulator.admin
        return await asyncio.to_thread(lambda: admin.count(method=method, kind=kind, status=status))

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def set_written(self, volume: VolumeId, gib: int) -> None:
        await self.admin_call("set_written", volume.arm_id, gib)

    async def fill_snapshots(self, volume: VolumeId) -> None:
        for _ in range(self.snapshot_limit):
            await self.port.create_snapshot(self.new_snapshot(volume), volume)

    async def throttle_snapshot_puts(self, storm: int) -> None:
        await self.admin_call("set_faults", f"put:volumeSnapshots:429:1.0:{storm}")

    async def fail_reads_of_volumes(self, status: int, times: int) -> None:
        await self.admin_call("set_faults", f"get:volumes:{status}:1.0:{times}")

    async def throttled_snapshot_puts(self) -> int:
        return await self.count(method="PUT", kind="volumeSnapshots", status=429)

    async def failed_volume_reads(self, status: int) -> int:
        return await self.count(method="GET", kind="volumes", status=status)

    @asynccontextmanager
    async def read_only_port(self) -> AsyncIterator[AzurePort]:
        reader = ElasticSanAzure(emulator_config(self.info, reader=True))
        try:
            yield reader
        finally:
            await reader.close()

    async def close(self) -> None:
        await self.adapter.close()
        await self.admin_call("clear_faults")


def start_emulator(state_dir: Path, *extra: str) -> EmulatorProcess:
    state_dir.mkdir(parents=True, exist_ok=True)
    seed = state_dir / "seed.json"
    seed.write_text(json.dumps(seed_document()), encoding="utf-8")
    process = EmulatorProcess(
        state_dir,
        seed=seed,
        extra_args=[
            "--subscription-id",
            SUBSCRIPTION,
            "--export-seconds",
            str(EXPORT_SECONDS),
            "--max-snapshots-per-volume",
            str(EMULATOR_SNAPSHOT_LIMIT),
            "--snapshot-rate-limit",
            str(EMULATOR_SNAPSHOT_RATE),
            *extra,
        ],
    )
    process.start()
    return process
