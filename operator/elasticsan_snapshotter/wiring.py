"""The composition root: settings in, adapters out.

Only this module knows which concrete adapter stands behind each port.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from elasticsan_snapshotter import __version__
from elasticsan_snapshotter.azure.config import AzureConfig, PacingConfig
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.freeze import (
    AgentUnavailable,
    FreezePolicy,
    MemberMount,
    WindowResult,
    WindowStep,
)
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.domain.ports import AzurePort
from elasticsan_snapshotter.settings import Settings, SettingsError

if TYPE_CHECKING:
    import kopf

    from elasticsan_snapshotter.freeze.client import AgentClient
    from elasticsan_snapshotter.kubernetes.api import KubeApi
    from elasticsan_snapshotter.kubernetes.handlers import Runtime
    from elasticsan_snapshotter.kubernetes.leader import LeaderElector


def azure_config(settings: Settings) -> AzureConfig:
    if not settings.subscription_id:
        raise SettingsError(
            "subscription_id is required (flag --subscription-id or env AZURE_SUBSCRIPTION_ID)"
        )
    try:
        return AzureConfig(
            subscription_id=settings.subscription_id,
            arm_endpoint=settings.arm_endpoint,
            authority_host=settings.authority_host or None,
            ca_bundle=settings.ca_bundle or None,
            tenant_id=settings.tenant_id or None,
            client_id=settings.client_id or None,
            client_secret=settings.client_secret or None,
            polling_interval=settings.polling_interval,
            pacing=PacingConfig(
                write_rate_per_second=settings.write_rate,
                write_burst=settings.write_burst,
                max_concurrency=settings.max_concurrency,
                # A full per-volume window is a Throttled with the wait, turned into a requeue
                # after it: sleeping would hold a worker for up to five minutes.
                max_snapshot_queue_seconds=0.0,
                snapshots_per_volume=settings.snapshots_per_window,
                snapshot_window_seconds=settings.snapshot_window,
            ),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def open_azure(settings: Settings) -> AzurePort:
    """The real Azure adapter for these settings; the caller closes it."""
    from elasticsan_snapshotter.azure.client import ElasticSanAzure

    return ElasticSanAzure(azure_config(settings))


def managed_sans(settings: Settings) -> list[ElasticSanId]:
    try:
        return [ElasticSanId.parse(arm_id) for arm_id in settings.managed_sans]
    except InvalidRequest as exc:
        raise SettingsError(f"managed_sans: {exc}") from exc


async def operator_runtime(settings: Settings) -> Runtime:
    """Build the operator's adapters and reconcilers inside the running event loop."""
    from elasticsan_snapshotter.domain.mapping import SanIndex
    from elasticsan_snapshotter.kubernetes.api import KubeApi
    from elasticsan_snapshotter.kubernetes.events import EventRecorder
    from elasticsan_snapshotter.kubernetes.handlers import Runtime, login

    azure = open_azure(settings)
    api = KubeApi(_async_login(login), user_agent=f"elasticsan-snapshotter/{__version__}")
    runtime = Runtime(
        settings=settings,
        azure=azure,
        index=SanIndex(azure, managed_sans(settings)),
        api=api,
        recorder=EventRecorder(api),
        freeze_window=AgentFreezeWindow(Path(settings.freeze_client_tls_dir)),
        freeze_agent_namespace=settings.freeze_agent_namespace
        or os.environ.get("POD_NAMESPACE")
        or "default",
    )
    runtime.build()
    return runtime


T = TypeVar("T")


class AgentFreezeWindow:
    """The group path's freeze window: gRPC clients of the agents (mutual TLS with the client
    certificate in ``tls_dir``, read anew for every window so a rotation needs no restart) and
    the coordinator. grpc is imported only when a group is frozen."""

    def __init__(self, tls_dir: Path) -> None:
        self.tls_dir = tls_dir

    def _connect(self, endpoints: Mapping[str, str]) -> dict[str, AgentClient]:
        from elasticsan_snapshotter.freeze.client import connect
        from elasticsan_snapshotter.freeze.tls import TlsFiles

        try:
            return connect(endpoints, TlsFiles.in_directory(self.tls_dir)) if endpoints else {}
        except OSError as exc:
            raise AgentUnavailable(f"the freeze agents' client certificate cannot be read: {exc}") from None

    async def run(
        self,
        endpoints: Mapping[str, str],
        lease_id: str,
        policy: FreezePolicy,
        members: Sequence[MemberMount],
        *,
        record: Callable[[WindowStep], Awaitable[None]],
        reserve: Callable[[], Awaitable[None]],
        cut: Callable[[], Awaitable[T]],
        pods_after: Callable[[], Awaitable[Iterable[tuple[str, str, str]]]],
    ) -> WindowResult[T]:
        from elasticsan_snapshotter.freeze_window import FreezeCoordinator

        clients = self._connect(endpoints)
        try:
            coordinator = FreezeCoordinator(clients, record=record)
            return await coordinator.run(
                lease_id, policy, members, reserve=reserve, cut=cut, pods_after=pods_after
            )
        finally:
            for client in clients.values():
                await client.close()

    async def release(self, endpoints: Mapping[str, str], lease_id: str, nodes: Iterable[str]) -> None:
        from elasticsan_snapshotter.freeze_window import release

        held = [n for n in nodes if n in endpoints]
        clients = self._connect({n: endpoints[n] for n in held})
        try:
            await release(clients, lease_id, held)
        finally:
            for client in clients.values():
                await client.close()


def _async_login(login: Callable[..., kopf.ConnectionInfo]) -> Callable[[], Awaitable[kopf.ConnectionInfo]]:
    async def call() -> kopf.ConnectionInfo:
        return login()

    return call


def elects_leader(settings: Settings) -> bool:
    """Replicas elect their active one through a Lease (Kopf then runs without its peering)."""
    return settings.leader_election and not settings.standalone


def leader_elector(settings: Settings, api: KubeApi) -> LeaderElector:
    import os
    import secrets
    import socket

    from elasticsan_snapshotter.kubernetes.leader import LeaderElector

    return LeaderElector(
        api=api,
        name=settings.lease_name,
        namespace=settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
        # The pod name in a cluster; elsewhere the host and a random part, unique per process.
        identity=os.environ.get("POD_ID") or f"{socket.gethostname()}-{secrets.token_hex(4)}",
    )
