"""One settings object for every process the project runs (operator, CSI controller, demo).

Values come from command-line flags, then environment variables, then
defaults. Environment names are listed beside each field; the Helm chart sets
them. Azure identity variables keep the names azure-identity itself reads
(``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``,
``AZURE_AUTHORITY_HOST``, ``AZURE_FEDERATED_TOKEN_FILE``), so workload
identity works with no extra configuration.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain.decisions import SNAPSHOT_RATE_LIMIT, SNAPSHOT_RATE_WINDOW
from elasticsan_snapshotter.domain.groups import GROUP_DRIVER_NAME

PUBLIC_ARM_ENDPOINT = "https://management.azure.com/"


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names it."""


@dataclass(frozen=True)
class Settings:
    driver_name: str = field(default=DRIVER_NAME, metadata={"env": "ESS_DRIVER_NAME"})
    group_driver_name: str = field(
        default=GROUP_DRIVER_NAME,
        metadata={
            "env": "ESS_GROUP_DRIVER_NAME",
            "help": "driver of the VolumeGroupSnapshotContents to handle (the PVs' CSI driver)",
        },
    )
    subscription_id: str = field(default="", metadata={"env": "AZURE_SUBSCRIPTION_ID"})
    managed_sans: tuple[str, ...] = field(
        default=(), metadata={"env": "ESS_MANAGED_SANS", "help": "comma-separated Elastic SAN ARM IDs"}
    )
    arm_endpoint: str = field(default=PUBLIC_ARM_ENDPOINT, metadata={"env": "ESS_ARM_ENDPOINT"})
    authority_host: str = field(default="", metadata={"env": "AZURE_AUTHORITY_HOST"})
    ca_bundle: str = field(
        default="", metadata={"env": "ESS_CA_BUNDLE", "help": "PEM file of CAs to trust for Azure endpoints"}
    )
    tenant_id: str = field(default="", metadata={"env": "AZURE_TENANT_ID"})
    client_id: str = field(default="", metadata={"env": "AZURE_CLIENT_ID"})
    client_secret: str = field(default="", metadata={"env": "AZURE_CLIENT_SECRET", "secret": True})
    polling_interval: float = field(default=2.0, metadata={"env": "ESS_POLLING_INTERVAL"})
    write_rate: float = field(
        default=5.0,
        metadata={"env": "ESS_WRITE_RATE", "help": "Azure writes per second (token bucket refill)"},
    )
    write_burst: int = field(default=20, metadata={"env": "ESS_WRITE_BURST"})
    max_concurrency: int = field(
        default=16, metadata={"env": "ESS_MAX_CONCURRENCY", "help": "Azure calls in flight at once"}
    )
    namespaces: tuple[str, ...] = field(
        default=(), metadata={"env": "ESS_NAMESPACES", "help": "comma-separated; empty means cluster-wide"}
    )
    create_contents: bool = field(
        default=True,
        metadata={
            "env": "ESS_CREATE_CONTENTS",
            "help": "create a dynamic VolumeSnapshot's content ahead of snapshot-controller",
        },
    )
    content_take_up_timeout: float = field(
        default=60.0,
        metadata={
            "env": "ESS_CONTENT_TAKE_UP_TIMEOUT",
            "help": "seconds a made content may be ready while its bound VolumeSnapshot is not; then it is remade",
        },
    )
    export_resource_group: str = field(
        default="", metadata={"env": "ESS_EXPORT_RESOURCE_GROUP", "help": "default resource group of exports"}
    )
    schedule_minimum_interval: float = field(
        default=60.0,
        metadata={
            "env": "ESS_SCHEDULE_MINIMUM_INTERVAL",
            "help": "shortest @every interval of a schedule, in seconds (lower only for tests)",
        },
    )
    snapshots_per_window: int = field(
        default=SNAPSHOT_RATE_LIMIT,
        metadata={"env": "ESS_SNAPSHOTS_PER_WINDOW", "help": "Elastic SAN: new snapshots per volume"},
    )
    snapshot_window: float = field(
        default=SNAPSHOT_RATE_WINDOW,
        metadata={"env": "ESS_SNAPSHOT_WINDOW", "help": "seconds of the per-volume snapshot window"},
    )
    metrics_port: int = field(default=8080, metadata={"env": "ESS_METRICS_PORT"})
    health_port: int = field(default=8081, metadata={"env": "ESS_HEALTH_PORT"})
    peering_name: str = field(default="elasticsan-snapshotter", metadata={"env": "ESS_PEERING_NAME"})
    standalone: bool = field(default=False, metadata={"env": "ESS_STANDALONE"})
    peering_priority: int = field(
        default=0,
        metadata={
            "env": "ESS_PEERING_PRIORITY",
            "help": "Kopf peering priority; 0 picks a random one, so replicas never tie (ties freeze all)",
        },
    )
    leader_election: bool = field(
        default=True,
        metadata={
            "env": "ESS_LEADER_ELECTION",
            "help": "replicas elect one active through a Lease (unless standalone); off: Kopf peering",
        },
    )
    lease_name: str = field(default="elasticsan-snapshotter", metadata={"env": "ESS_LEASE_NAME"})
    lease_namespace: str = field(
        default="",
        metadata={
            "env": "ESS_LEASE_NAMESPACE",
            "help": "namespace of the Lease; empty: the pod's, else default",
        },
    )
    log_format: str = field(default="json", metadata={"env": "ESS_LOG_FORMAT", "help": "json or text"})
    freeze_agent_namespace: str = field(
        default="",
        metadata={
            "env": "ESS_FREEZE_AGENT_NAMESPACE",
            "help": "namespace of the freeze agent pods; empty: the pod's, else default",
        },
    )
    freeze_agent_selector: str = field(
        default="app.kubernetes.io/component=freeze-agent",
        metadata={"env": "ESS_FREEZE_AGENT_SELECTOR", "help": "label selector of the freeze agent pods"},
    )
    freeze_client_tls_dir: str = field(
        default="/etc/elasticsan-snapshotter/freeze-client-tls",
        metadata={
            "env": "ESS_FREEZE_CLIENT_TLS_DIR",
            "help": "tls.crt, tls.key and ca.crt of the operator's client certificate for the freeze agents",
        },
    )

    def __post_init__(self) -> None:
        if not self.driver_name:
            raise SettingsError("driver_name must not be empty")
        if not self.group_driver_name or self.group_driver_name == self.driver_name:
            raise SettingsError("group_driver_name must be set and differ from driver_name")
        for name in ("polling_interval", "write_rate", "schedule_minimum_interval", "snapshot_window"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("write_burst", "max_concurrency", "snapshots_per_window"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"log_format must be 'json' or 'text', not {self.log_format!r}")

    @property
    def is_public_cloud(self) -> bool:
        return self.arm_endpoint.rstrip("/") == PUBLIC_ARM_ENDPOINT.rstrip("/")

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict fit for logs: secrets replaced."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata.get("secret") and value else value
        return out

    @classmethod
    def load(cls, args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Flags first (those not left at None), then the environment, then defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw: Any = getattr(args, f.name, None) if args is not None else None
            if raw is None and f.metadata.get("env") in env:
                raw = env[f.metadata["env"]]
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--flag`` per setting; each defaults to None so the environment can fill it."""
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            help_text = f.metadata.get("help", "")
            env_name = f.metadata.get("env")
            help_text = f"{help_text} (env {env_name})".strip() if env_name else help_text
            if f.type == "bool":
                # --x and --no-x: a flag can turn off a setting that defaults to on (leader election).
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            else:
                parser.add_argument(flag, default=None, help=help_text)


def _convert(name: str, type_name: object, raw: Any) -> Any:
    if isinstance(raw, bool | tuple | list):
        return tuple(raw) if isinstance(raw, list) else raw
    text = str(raw).strip()
    try:
        if type_name == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
    except ValueError:
        raise SettingsError(f"setting {name}: cannot read {raw!r} as {type_name}") from None
    if type_name == "tuple[str, ...]":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text
