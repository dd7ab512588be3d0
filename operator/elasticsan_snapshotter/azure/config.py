"""Settings of the Azure adapter: where ARM and Entra ID live, how to trust them, how fast to go."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from elasticsan_snapshotter.domain.decisions import (
    MAX_SNAPSHOTS_PER_VOLUME,
    SNAPSHOT_RATE_LIMIT,
    SNAPSHOT_RATE_WINDOW,
)

PUBLIC_ARM_ENDPOINT = "https://management.azure.com/"


def _require_https(name: str, url: str) -> None:
    # Bearer tokens are only ever sent over TLS; azure-core and azure-identity refuse otherwise.
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise ValueError(f"{name} must be an https URL, got {url!r}")


@dataclass(frozen=True)
class PacingConfig:
    """Client-side limits that keep the operator under Azure's throttling thresholds."""

    write_rate_per_second: float = 2.0
    """Refill rate of the per-subscription write budget (ARM refills its own bucket at 10/s)."""
    write_burst: int = 20
    """Writes allowed back to back when the budget is full."""
    max_concurrency: int = 8
    """Azure operations in flight at once, long-running operations included."""
    snapshots_per_volume: int = SNAPSHOT_RATE_LIMIT
    snapshot_window_seconds: float = SNAPSHOT_RATE_WINDOW
    """Elastic SAN allows 7 new snapshots per volume every 5 minutes."""
    snapshot_window_margin_seconds: float = 1.0
    """Extra wait past the window, so clock skew between us and the service cannot break the limit."""
    max_snapshot_queue_seconds: float | None = None
    """Longest a snapshot create may wait for its volume's window; ``None`` queues without bound."""

    def __post_init__(self) -> None:
        if self.write_rate_per_second <= 0 or self.write_burst < 1:
            raise ValueError("the write budget needs a positive rate and a burst of at least 1")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.snapshots_per_volume < 1 or self.snapshot_window_seconds <= 0:
            raise ValueError("the per-volume snapshot pace needs a positive count and window")
        if self.snapshot_window_margin_seconds < 0:
            raise ValueError("snapshot_window_margin_seconds must not be negative")


@dataclass(frozen=True)
class RetryConfig:
    """azure-core's own retry policy; the adapter adds no retry loop of its own."""

    total: int = 10
    status: int = 3
    """Retries on 408/429/5xx responses; each waits for ``Retry-After`` when the response has one."""
    connect: int = 3
    read: int = 3
    backoff_factor: float = 0.8
    backoff_max: float = 60.0
    connection_timeout: float = 30.0
    read_timeout: float = 120.0

    def sdk_kwargs(self) -> dict[str, float | int]:
        return {
            "retry_total": self.total,
            "retry_status": self.status,
            "retry_connect": self.connect,
            "retry_read": self.read,
            "retry_backoff_factor": self.backoff_factor,
            "retry_backoff_max": self.backoff_max,
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
        }


@dataclass(frozen=True)
class AzureConfig:
    """Everything the adapter needs to reach one subscription.

    For the public cloud only ``subscription_id`` is required: the credential is
    ``DefaultAzureCredential`` (environment, workload identity, managed identity, CLI).
    For a sovereign cloud set ``arm_endpoint`` and ``authority_host``; for the local
    emulator also ``ca_bundle`` and a client secret.
    """

    subscription_id: str
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT
    authority_host: str | None = None
    """Entra ID authority, e.g. ``https://login.microsoftonline.us``; ``None`` lets azure-identity decide
    (``AZURE_AUTHORITY_HOST`` or the public cloud)."""
    ca_bundle: str | None = None
    """PEM file of extra roots to trust for ARM and the authority (the emulator's CA)."""
    tenant_id: str | None = None
    client_id: str | None = None
    """Application (service principal) or user-assigned identity client ID."""
    client_secret: str | None = field(default=None, repr=False)
    """When set, a client-secret credential is used instead of ``DefaultAzureCredential``."""
    disable_instance_discovery: bool | None = None
    """``None``: disabled exactly when ``authority_host`` is not a well-known Azure authority."""
    credential_scopes: tuple[str, ...] | None = None
    """``None``: derived from ``arm_endpoint`` (``<endpoint>/.default``)."""
    polling_interval: float = 2.0
    """Seconds between polls of long-running operations when the service sends no ``Retry-After``."""
    retry: RetryConfig = field(default_factory=RetryConfig)
    pacing: PacingConfig = field(default_factory=PacingConfig)
    max_snapshots_per_volume: int = MAX_SNAPSHOTS_PER_VOLUME
    max_volumes_per_group: int = 1000
    """Service limits; they tell a count limit from a full SAN when an answer (QuotaExceeded) names neither."""

    def __post_init__(self) -> None:
        if not self.subscription_id:
            raise ValueError("subscription_id is required")
        _require_https("arm_endpoint", self.arm_endpoint)
        if self.authority_host is not None:
            _require_https("authority_host", self.authority_host)
        if self.polling_interval <= 0:
            raise ValueError("polling_interval must be positive")

    @property
    def base_url(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/"

    @property
    def scopes(self) -> tuple[str, ...]:
        if self.credential_scopes:
            return self.credential_scopes
        parts = urlsplit(self.arm_endpoint)
        return (f"{parts.scheme}://{parts.netloc}/.default",)

    @property
    def connection_verify(self) -> str | bool:
        return self.ca_bundle if self.ca_bundle else True


__all__ = ["PUBLIC_ARM_ENDPOINT", "AzureConfig", "PacingConfig", "RetryConfig"]
