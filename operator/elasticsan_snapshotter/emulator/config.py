"""Settings of one emulator run (command-line flags, some adjustable at runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EmulatorConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    seed_file: Path | None = None
    latency_ms: int = 0
    faults: str = ""
    fault_seed: int = 0
    # Identity; None means "generate once and keep in the state directory".
    subscription_id: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    reader_client_id: str | None = None
    reader_client_secret: str | None = None
    # Expected content of the federated token file; None accepts any non-empty assertion.
    federated_token: str | None = None
    token_lifetime: int = 3600
    # Long-running operations: how long they take and the Retry-After the emulator sends.
    lro_seconds: float = 0.0
    # Integer seconds: the SDK deserialises Retry-After of an LRO's first response as int.
    lro_retry_after: int = 1
    throttle_retry_after: int = 1
    # Seconds for an exported managed-disk snapshot to go from 0 to 100 percent.
    export_seconds: float = 5.0
    page_size: int = 100
    snapshot_rate_limit: int = 7
    snapshot_rate_window: float = 300.0
    max_snapshots_per_volume: int = 200
    sans_per_region: int = 5
    # "refuse": deleting a volume with snapshots needs x-ms-delete-snapshots: true.
    # "delete": snapshots always go with the volume.
    volume_delete_with_snapshots: str = "refuse"
    # A JSON line per answered request (see access_log.py); None keeps no access log.
    access_log: Path | None = None


def format_seconds(value: float) -> str:
    """Render a Retry-After value: integral seconds as an integer, as HTTP defines it."""
    if value == int(value):
        return str(int(value))
    return f"{value:g}"
