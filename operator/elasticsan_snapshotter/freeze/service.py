"""The gRPC face of the lease book: messages in and out, domain errors to status codes.

The codes are the contract with ``client``: FAILED_PRECONDITION is a refusal (never
frozen), ABORTED a file system frozen by someone else, NOT_FOUND an unknown lease.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from elasticsan_snapshotter import __version__
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    SnapshotterError,
)
from elasticsan_snapshotter.domain.freeze import FreezeRefused, FrozenBySomeoneElse, LeaseState, Target
from elasticsan_snapshotter.freeze._stubs import pb
from elasticsan_snapshotter.freeze.journal import LeaseRecord
from elasticsan_snapshotter.freeze.leases import LeaseBook
from elasticsan_snapshotter.freeze.tls import peer_names

GRPC_CODES: dict[type[SnapshotterError], grpc.StatusCode] = {
    FreezeRefused: grpc.StatusCode.FAILED_PRECONDITION,
    FrozenBySomeoneElse: grpc.StatusCode.ABORTED,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    SnapshotterError: grpc.StatusCode.INTERNAL,
}

STATES = {
    LeaseState.ACTIVE: pb.ACTIVE,
    LeaseState.THAWED: pb.THAWED,
    LeaseState.EXPIRED: pb.EXPIRED,
    LeaseState.THAWED_ON_RESTART: pb.THAWED_ON_RESTART,
    LeaseState.THAWED_ON_SHUTDOWN: pb.THAWED_ON_SHUTDOWN,
}

_NS = 1_000_000_000
R = TypeVar("R")


def grpc_code(error: SnapshotterError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in GRPC_CODES:
            return GRPC_CODES[cls]
    return grpc.StatusCode.INTERNAL


def lease_message(record: LeaseRecord) -> Any:
    return pb.Lease(
        lease_id=record.lease_id,
        state=STATES[record.lease_state()],
        boot_id=record.boot_id,
        node_name=record.node_name,
        targets=[
            pb.FrozenTarget(
                target=pb.Target(pod_uid=m.pod_uid, pv_name=m.pv_name),
                mount_path=m.mount_path,
                device=m.device,
            )
            for m in record.mounts
        ],
        frozen_at_unix_ns=int(record.frozen_at * _NS),
        expires_at_unix_ns=int(record.expires_at * _NS),
        ended_at_unix_ns=int(record.ended_at * _NS),
    )


def _rpc(method: Callable[[Any, Any, Any], Awaitable[R]]) -> Callable[[Any, Any, Any], Awaitable[R]]:
    """Authorize the caller, then run the method with domain errors turned into status codes."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> R:
        try:
            self.authorize(context)
            return await method(self, request, context)
        except SnapshotterError as error:
            await context.abort(grpc_code(error), str(error))
            raise AssertionError("abort returns only by raising") from error

    return wrapper


class AgentServicer:
    def __init__(self, book: LeaseBook, client_name: str, keep_results: float) -> None:
        self.book = book
        self.client_name = client_name
        self.keep_results = keep_results

    def authorize(self, context: Any) -> None:
        names = peer_names(context.auth_context())
        if self.client_name not in names:
            raise Forbidden(f"client certificate {sorted(names)} is not {self.client_name}")

    @_rpc
    async def GetIdentity(self, request: Any, context: Any) -> Any:
        return pb.Identity(
            node_name=self.book.node_name,
            boot_id=self.book.boot_id,
            version=__version__,
            max_ttl_ms=int(self.book.max_ttl * 1000),
            keep_results_s=int(self.keep_results),
        )

    @_rpc
    async def Freeze(self, request: Any, context: Any) -> Any:
        targets = [Target(t.pod_uid, t.pv_name) for t in request.targets]
        record = await self.book.freeze(request.lease_id, targets, request.ttl_ms / 1000)
        return lease_message(record)

    @_rpc
    async def GetLease(self, request: Any, context: Any) -> Any:
        return lease_message(self.book.get(request.lease_id))

    @_rpc
    async def Thaw(self, request: Any, context: Any) -> Any:
        was_active, record = await self.book.thaw(request.lease_id)
        return pb.ThawResponse(was_active=was_active, lease=lease_message(record))


class LocalServicer:
    """ThawAll for the preStop hook, on a unix socket only the agent's own container reaches."""

    def __init__(self, book: LeaseBook) -> None:
        self.book = book

    async def ThawAll(self, request: Any, context: Any) -> Any:
        return pb.ThawAllResponse(thawed_lease_ids=await self.book.thaw_all())


__all__ = ["GRPC_CODES", "STATES", "AgentServicer", "LocalServicer", "grpc_code", "lease_message"]
