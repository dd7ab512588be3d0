"""The operator's side of the freeze agent's API: one node's agent as a ``FreezeAgentPort``.

It dials the agent's address but checks the agent's certificate for ``SERVER_NAME``, so the
address can be a pod IP. Status codes become domain errors here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    SnapshotterError,
)
from elasticsan_snapshotter.domain.freeze import (
    AgentIdentity,
    AgentUnavailable,
    FreezeRefused,
    FrozenBySomeoneElse,
    LeaseState,
    LeaseView,
    Target,
)
from elasticsan_snapshotter.freeze._stubs import AgentStub, pb
from elasticsan_snapshotter.freeze.service import STATES
from elasticsan_snapshotter.freeze.tls import SERVER_NAME, TlsFiles, channel_credentials

CALL_TIMEOUT = 10.0

ERRORS: dict[grpc.StatusCode, type[SnapshotterError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FreezeRefused,
    grpc.StatusCode.ABORTED: FrozenBySomeoneElse,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
}
_FROM_PB = {v: k for k, v in STATES.items()}
_NS = 1e9


def lease_view(message: Any) -> LeaseView:
    return LeaseView(
        lease_id=message.lease_id,
        state=_FROM_PB.get(message.state, LeaseState.THAWED),
        boot_id=message.boot_id,
        node_name=message.node_name,
        targets=tuple(Target(t.target.pod_uid, t.target.pv_name) for t in message.targets),
        expires_at_unix=message.expires_at_unix_ns / _NS,
    )


class AgentClient:
    def __init__(self, address: str, tls: TlsFiles, *, call_timeout: float = CALL_TIMEOUT) -> None:
        self.address = address
        self.call_timeout = call_timeout
        self._channel = grpc.aio.secure_channel(
            address, channel_credentials(tls), options=[("grpc.ssl_target_name_override", SERVER_NAME)]
        )
        self._stub: Any = AgentStub(self._channel)

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.call_timeout)
        except grpc.aio.AioRpcError as exc:
            error = ERRORS.get(exc.code())
            detail = exc.details() or exc.code().name
            if error is None:
                raise AgentUnavailable(f"freeze agent at {self.address}: {method}: {detail}") from None
            raise error(f"freeze agent at {self.address}: {detail}") from None

    async def identity(self) -> AgentIdentity:
        reply = await self._call("GetIdentity", pb.GetIdentityRequest())
        return AgentIdentity(reply.node_name, reply.boot_id, reply.max_ttl_ms / 1000)

    async def freeze(self, lease_id: str, targets: Sequence[Target], ttl_seconds: float) -> LeaseView:
        request = pb.FreezeRequest(
            lease_id=lease_id,
            targets=[pb.Target(pod_uid=t.pod_uid, pv_name=t.pv_name) for t in targets],
            ttl_ms=max(1, int(ttl_seconds * 1000)),
        )
        return lease_view(await self._call("Freeze", request))

    async def get_lease(self, lease_id: str) -> LeaseView:
        return lease_view(await self._call("GetLease", pb.GetLeaseRequest(lease_id=lease_id)))

    async def thaw(self, lease_id: str) -> tuple[bool, LeaseView]:
        reply = await self._call("Thaw", pb.ThawRequest(lease_id=lease_id))
        return reply.was_active, lease_view(reply.lease)

    async def close(self) -> None:
        await self._channel.close()


def connect(endpoints: Mapping[str, str], tls: TlsFiles) -> dict[str, AgentClient]:
    """One client per node from node name → agent address (``<pod IP>:<port>`` of the DaemonSet's pod)."""
    return {node: AgentClient(address, tls) for node, address in endpoints.items()}


__all__ = ["CALL_TIMEOUT", "ERRORS", "AgentClient", "connect", "lease_view"]
