"""The Azure port over the asynchronous Azure SDKs.

One ``ElasticSanAzure`` per process holds one Elastic SAN client, one Compute
client and one credential over one shared HTTPS session, and ``close()`` releases
all of them. azure-core does
the retrying (``Retry-After`` included) and the long-running-operation polling;
this module adds idempotency by name, client-side pacing, metrics and logs, and
turns SDK exceptions into domain errors through ``azure.errors``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline import PipelineResponse
from azure.mgmt.elasticsan import models as em
from azure.mgmt.elasticsan.aio import ElasticSanMgmtClient

from elasticsan_snapshotter import health, metrics
from elasticsan_snapshotter.azure.config import AzureConfig
from elasticsan_snapshotter.azure.credentials import build_credential
from elasticsan_snapshotter.azure.errors import (
    TRANSLATED,
    is_ambiguous_quota,
    is_ambiguous_refusal,
    quota_error,
    refusal_error,
    request_id,
    translate,
    unreadable_answer,
)
from elasticsan_snapshotter.azure.pacing import Pacing
from elasticsan_snapshotter.azure.transport import SharedSession
from elasticsan_snapshotter.domain.decisions import check_volume_delete
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    InvalidRequest,
    LimitReached,
    NotFound,
    Unauthenticated,
)
from elasticsan_snapshotter.domain.identity import (
    DiskSnapshotId,
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
)
from elasticsan_snapshotter.domain.ports import (
    SUCCEEDED,
    DiskSnapshotInfo,
    ElasticSanInfo,
    SnapshotInfo,
    VolumeInfo,
    VolumeSource,
)

if TYPE_CHECKING:
    # Loaded on first use: only exports need Compute, and its SDK costs ~20 MiB and 0.6 s at start.
    from azure.mgmt.compute import models as cm
    from azure.mgmt.compute.aio import ComputeManagementClient

log = logging.getLogger(__name__)

T = TypeVar("T")

SUCCESS = "Success"
UNEXPECTED = "Unexpected"
COPY_FROM_SAN_SNAPSHOT = "CopyFromSanSnapshot"

# The request ID of the latest response seen in this task: azure-core calls the
# response hook in the caller's task, so the operation that follows can log it.
_last_request_id: ContextVar[str | None] = ContextVar("azure_last_request_id", default=None)
_last_status: ContextVar[int | None] = ContextVar("azure_last_status", default=None)


def _same_arm_id(left: str | None, right: str) -> bool:
    """ARM IDs compare case-insensitively; some APIs drop the leading slash."""
    if left is None:
        return False

    def norm(value: str) -> str:
        return "/" + value.strip().strip("/").lower()

    return norm(left) == norm(right)


def _text(value: object) -> str:
    """A model field as plain text: SDK enums subclass str, but ``str()`` of them gives the member name."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _volume_group_path(vg: VolumeGroupId) -> tuple[str, str, str]:
    return (vg.san.resource_group, vg.san.name, vg.name)


class ElasticSanAzure:
    """``AzurePort`` over azure-mgmt-elasticsan, azure-mgmt-compute and azure-identity."""

    def __init__(
        self,
        config: AzureConfig,
        *,
        credential: AsyncTokenCredential | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.config = config
        # One SSL context and one connection pool for both clients and the credential.
        self._session = SharedSession(config.ca_bundle)
        self._owns_credential = credential is None
        self._credential = (
            credential
            if credential is not None
            else build_credential(config, transport=self._session.transport())
        )
        self.pacing = pacing if pacing is not None else Pacing(config.pacing)
        options: dict[str, Any] = {
            "base_url": config.base_url,
            "credential_scopes": list(config.scopes),
            "polling_interval": config.polling_interval,
            "transport": self._session.transport(),
            "raw_response_hook": _on_response,
            **config.retry.sdk_kwargs(),
        }
        self._options = options
        self._san = ElasticSanMgmtClient(self._credential, config.subscription_id, **options)
        # Handles name their subscription, which may not be the configured one: clients per
        # subscription, made on first use (Compute only for exports).
        self._other_san: dict[str, ElasticSanMgmtClient] = {}
        self._compute_clients: dict[str, ComputeManagementClient] = {}
        self._closed = False

    def _san_in(self, subscription: str) -> ElasticSanMgmtClient:
        key = subscription.lower()
        if key == self.config.subscription_id.lower():
            return self._san
        if key not in self._other_san:
            self._other_san[key] = ElasticSanMgmtClient(self._credential, subscription, **self._options)
        return self._other_san[key]

    def _compute_in(self, subscription: str) -> ComputeManagementClient:
        key = subscription.lower()
        if key not in self._compute_clients:
            from azure.mgmt.compute.aio import ComputeManagementClient

            self._compute_clients[key] = ComputeManagementClient(
                self._credential, subscription, **self._options
            )
        return self._compute_clients[key]

    async def __aenter__(self) -> ElasticSanAzure:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for san in [self._san, *self._other_san.values()]:
            await san.close()
        for compute in self._compute_clients.values():
            await compute.close()
        if self._owns_credential:
            await self._credential.close()
        await self._session.close()

    # -- the call wrapper: pacing, metrics, logs, error translation -----------------

    async def _call(
        self,
        operation: str,
        what: str,
        action: Callable[[], Awaitable[T]],
        *,
        write: bool = False,
    ) -> T:
        if write:
            waited = await self.pacing.before_write()
            metrics.AZURE_PACING_WAIT.labels("write_budget").observe(waited)
        async with self.pacing.slot():
            _last_request_id.set(None)
            _last_status.set(None)
            started = time.monotonic()
            try:
                result = await action()
            except TRANSLATED as exc:
                error = translate(exc, what)
                if isinstance(error, Unauthenticated):
                    health.CREDENTIALS.refused(health.AZURE, str(error))
                if error.request_id is None:
                    error.request_id = _last_request_id.get()
                self._record(operation, what, error.reason, started, error.request_id, write)
                if error is exc:
                    raise
                raise error from exc
            except Exception as exc:
                req_id = _last_request_id.get()
                unreadable = unreadable_answer(exc, _last_status.get(), what, req_id)
                if unreadable is not None:
                    self._record(operation, what, unreadable.reason, started, req_id, write)
                    raise unreadable from exc
                # A bug, or a success the SDK could not read: counted, then left as it is.
                self._record(operation, what, UNEXPECTED, started, req_id, write)
                raise
            self._record(operation, what, SUCCESS, started, _last_request_id.get(), write)
            health.CREDENTIALS.worked(health.AZURE)
            return result

    @staticmethod
    def _record(
        operation: str, what: str, outcome: str, started: float, req_id: str | None, write: bool
    ) -> None:
        elapsed = time.monotonic() - started
        metrics.AZURE_CALLS.labels(operation, outcome).inc()
        metrics.AZURE_CALL_DURATION.labels(operation).observe(elapsed)
        level = logging.INFO if write or outcome != SUCCESS else logging.DEBUG
        log.log(
            level,
            "azure %s %s: %s in %.2fs (request id %s)",
            operation,
            what,
            outcome,
            elapsed,
            req_id or "-",
            extra={"operation": operation, "outcome": outcome, "request_id": req_id},
        )

    # -- Elastic SANs and volume groups ----------------------------------------------

    async def list_elastic_sans(self) -> list[ElasticSanInfo]:
        async def action() -> list[ElasticSanInfo]:
            return [self._san_info(item) async for item in self._san.elastic_sans.list_by_subscription()]

        return await self._call("elastic_san.list", f"subscription {self.config.subscription_id}", action)

    async def get_elastic_san(self, san: ElasticSanId) -> ElasticSanInfo:
        async def action() -> ElasticSanInfo:
            return self._san_info(
                await self._san_in(san.subscription).elastic_sans.get(san.resource_group, san.name)
            )

        return await self._call("elastic_san.get", san.arm_id, action)

    async def list_volume_groups(self, san: ElasticSanId) -> list[VolumeGroupId]:
        async def action() -> list[VolumeGroupId]:
            pages = self._san_in(san.subscription).volume_groups.list_by_elastic_san(
                san.resource_group, san.name
            )
            return [san.volume_group(str(item.name)) async for item in pages]

        return await self._call("volume_group.list", san.arm_id, action)

    # -- volumes -------------------------------------------------------------------------

    async def list_volumes(self, volume_group: VolumeGroupId) -> list[VolumeInfo]:
        async def action() -> list[VolumeInfo]:
            pages = self._san_in(volume_group.san.subscription).volumes.list_by_volume_group(
                *_volume_group_path(volume_group)
            )
            return [self._volume_info(item, volume_group.volume(str(item.name))) async for item in pages]

        return await self._call("volume.list", volume_group.arm_id, action)

    async def get_volume(self, volume: VolumeId) -> VolumeInfo:
        async def action() -> VolumeInfo:
            found = await self._san_in(volume.subscription).volumes.get(
                *_volume_group_path(volume.volume_group), volume.name
            )
            return self._volume_info(found, volume)

        return await self._call("volume.get", volume.arm_id, action)

    async def create_volume(
        self, volume: VolumeId, size_gib: int, source: VolumeSource | None = None
    ) -> VolumeInfo:
        existing = await self._find(self.get_volume(volume))
        if existing is not None:
            if existing.source != source or existing.size_gib != size_gib:
                raise AlreadyExists(
                    f"volume {volume.arm_id} exists with {existing.size_gib} GiB from "
                    f"{_describe(existing.source)}, not {size_gib} GiB from {_describe(source)}"
                )
            return existing
        body = em.Volume(
            properties=em.VolumeProperties(size_gi_b=size_gib, creation_data=_creation_data(source))
        )

        async def action() -> VolumeInfo:
            poller = await self._san_in(volume.subscription).volumes.begin_create(
                *_volume_group_path(volume.volume_group), volume.name, body
            )
            return self._volume_info(await poller.result(), volume)

        async def at_count_limit() -> bool:
            return len(await self.list_volumes(volume.volume_group)) >= self.config.max_volumes_per_group

        creating = self._call("volume.create", volume.arm_id, action, write=True)
        return await self._quota_decided(
            self._refusal_decided(creating, lambda: self._source_ready(source)), at_count_limit
        )

    async def delete_volume(self, volume: VolumeId, *, delete_snapshots: bool) -> None:
        if not delete_snapshots:
            # The service's behaviour without x-ms-delete-snapshots is undocumented: check ourselves,
            # so that snapshots are never lost by a delete that did not ask for it.
            try:
                snapshots = await self.list_snapshots(volume.volume_group, volume.name)
            except NotFound:
                return
            check_volume_delete(volume, snapshots, delete_snapshots=False)

        async def action() -> None:
            poller = await self._san_in(volume.subscription).volumes.begin_delete(
                *_volume_group_path(volume.volume_group),
                volume.name,
                x_ms_delete_snapshots="true" if delete_snapshots else "false",
            )
            await poller.result()

        await self._deleted(self._call("volume.delete", volume.arm_id, action, write=True))

    # -- Elastic SAN snapshots -----------------------------------------------------------

    async def get_snapshot(self, snapshot: SnapshotId) -> SnapshotInfo:
        async def action() -> SnapshotInfo:
            found = await self._san_in(snapshot.subscription).volume_snapshots.get(
                *_volume_group_path(snapshot.volume_group), snapshot.name
            )
            return self._snapshot_info(found, snapshot)

        return await self._call("snapshot.get", snapshot.arm_id, action)

    async def create_snapshot(
        self, snapshot: SnapshotId, source: VolumeId, *, fresh: bool = False
    ) -> SnapshotInfo:
        # GET by the deterministic name first: a retry after a 429, a timeout or a crash adopts
        # what an earlier attempt made instead of making a second snapshot. Retries inside one
        # call are azure-core's and re-send the same idempotent PUT, so a fresh create needs no GET.
        existing = None if fresh else await self._find(self.get_snapshot(snapshot))
        if existing is not None:
            if existing.source_volume != source:
                raise AlreadyExists(
                    f"snapshot {snapshot.arm_id} exists with source volume "
                    f"{existing.source_volume.arm_id}, not {source.arm_id}"
                )
            return existing
        waited = await self.pacing.before_snapshot(source.arm_id)
        metrics.AZURE_PACING_WAIT.labels("snapshots_per_volume").observe(waited)
        body = em.Snapshot(
            properties=em.SnapshotProperties(creation_data=em.SnapshotCreationData(source_id=source.arm_id))
        )

        async def action() -> SnapshotInfo:
            poller = await self._san_in(snapshot.subscription).volume_snapshots.begin_create(
                *_volume_group_path(snapshot.volume_group), snapshot.name, body
            )
            return self._snapshot_info(await poller.result(), snapshot)

        async def at_count_limit() -> bool:
            taken = await self.list_snapshots(source.volume_group, source.name)
            return len(taken) >= self.config.max_snapshots_per_volume

        return await self._quota_decided(
            self._call("snapshot.create", snapshot.arm_id, action, write=True), at_count_limit
        )

    async def list_snapshots(
        self, volume_group: VolumeGroupId, volume_name: str | None = None
    ) -> list[SnapshotInfo]:
        # The service matches the filter unquoted ("volumeName eq myvolume").
        query = f"volumeName eq {volume_name}" if volume_name else None

        async def action() -> list[SnapshotInfo]:
            pages = self._san_in(volume_group.san.subscription).volume_snapshots.list_by_volume_group(
                *_volume_group_path(volume_group), filter=query
            )
            found = [self._snapshot_info(item, volume_group.snapshot(str(item.name))) async for item in pages]
            # Filter again: a service that ignores $filter must not widen the answer.
            if volume_name:
                found = [s for s in found if s.source_volume.name.lower() == volume_name.lower()]
            return found

        return await self._call("snapshot.list", volume_group.arm_id, action)

    async def delete_snapshot(self, snapshot: SnapshotId) -> None:
        async def action() -> None:
            poller = await self._san_in(snapshot.subscription).volume_snapshots.begin_delete(
                *_volume_group_path(snapshot.volume_group), snapshot.name
            )
            await poller.result()

        await self._deleted(self._call("snapshot.delete", snapshot.arm_id, action, write=True))

    # -- managed-disk snapshots (export) ---------------------------------------------

    async def get_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> DiskSnapshotInfo:
        async def action() -> DiskSnapshotInfo:
            found = await self._compute_in(disk_snapshot.subscription).snapshots.get(
                disk_snapshot.resource_group, disk_snapshot.name
            )
            return self._disk_snapshot_info(found, disk_snapshot)

        return await self._call("disk_snapshot.get", disk_snapshot.arm_id, action)

    async def create_disk_snapshot(
        self,
        disk_snapshot: DiskSnapshotId,
        source: SnapshotId,
        *,
        location: str,
        sku: str = "Standard_LRS",
        incremental: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> DiskSnapshotInfo:
        existing = await self._find(self.get_disk_snapshot(disk_snapshot))
        if existing is not None:
            if existing.source != source:
                raise AlreadyExists(
                    f"managed-disk snapshot {disk_snapshot.arm_id} exists and was not exported from "
                    f"{source.arm_id}"
                )
            return existing
        from azure.mgmt.compute import models as cm

        body = cm.Snapshot(
            location=location,
            sku=cm.SnapshotSku(name=sku),
            tags=dict(tags or {}),
            properties=cm.SnapshotProperties(
                incremental=incremental,
                creation_data=cm.CreationData(
                    create_option=COPY_FROM_SAN_SNAPSHOT, elastic_san_resource_id=source.arm_id
                ),
            ),
        )

        async def action() -> DiskSnapshotInfo:
            poller = await self._compute_in(disk_snapshot.subscription).snapshots.begin_create_or_update(
                disk_snapshot.resource_group, disk_snapshot.name, body
            )
            return self._disk_snapshot_info(await poller.result(), disk_snapshot)

        creating = self._call("disk_snapshot.create", disk_snapshot.arm_id, action, write=True)
        return await self._refusal_decided(creating, lambda: self._source_ready(source))

    async def delete_disk_snapshot(self, disk_snapshot: DiskSnapshotId) -> None:
        async def action() -> None:
            poller = await self._compute_in(disk_snapshot.subscription).snapshots.begin_delete(
                disk_snapshot.resource_group, disk_snapshot.name
            )
            await poller.result()

        await self._deleted(self._call("disk_snapshot.delete", disk_snapshot.arm_id, action, write=True))

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _find(lookup: Awaitable[T]) -> T | None:
        """The resource, or ``None`` when it does not exist."""
        try:
            return await lookup
        except NotFound:
            return None

    @staticmethod
    async def _quota_decided(create: Awaitable[T], at_count_limit: Callable[[], Awaitable[bool]]) -> T:
        """A create whose quota answer names no cause learns it from the state: a count or capacity."""
        try:
            return await create
        except LimitReached as error:
            if not is_ambiguous_quota(error.__cause__):
                raise
            decided = quota_error(error, at_count_limit=await at_count_limit())
            if decided is error:
                raise
            raise decided from error.__cause__

    @staticmethod
    async def _refusal_decided(create: Awaitable[T], source_ready: Callable[[], Awaitable[bool]]) -> T:
        """A create refused without a cause named: a source not ready yet passes, a ready one never will."""
        try:
            return await create
        except InvalidRequest as error:
            if not is_ambiguous_refusal(error.__cause__):
                raise
            decided = refusal_error(error, source_ready=await source_ready())
            if decided is error:
                raise
            raise decided from error.__cause__

    async def _source_ready(self, source: VolumeSource | None) -> bool:
        try:
            if isinstance(source, SnapshotId):
                return (await self.get_snapshot(source)).provisioning_state == SUCCEEDED
            if isinstance(source, DiskSnapshotId):
                info = await self.get_disk_snapshot(source)
                return info.provisioning_state == SUCCEEDED and info.completion_percent >= 100
        except NotFound:
            pass  # a missing source is no matter of waiting
        return True

    @staticmethod
    async def _deleted(deletion: Awaitable[None]) -> None:
        """A delete whose target is already gone has done its job."""
        try:
            await deletion
        except NotFound:
            return

    def _san_info(self, model: em.ElasticSan) -> ElasticSanInfo:
        props = model.properties
        total_tib = props.total_size_ti_b
        if total_tib is None:
            total_tib = (props.base_size_ti_b or 0) + (props.extended_capacity_size_ti_b or 0)
        return ElasticSanInfo(
            id=ElasticSanId.parse(str(model.id)),
            location=str(model.location),
            total_size_tib=int(total_tib),
            total_volume_size_gib=int(props.total_volume_size_gi_b or 0),
            provisioning_state=_text(props.provisioning_state),
        )

    def _volume_info(self, model: em.Volume, volume: VolumeId) -> VolumeInfo:
        props = model.properties
        target = props.storage_target if props is not None else None
        return VolumeInfo(
            id=volume,
            size_gib=int(props.size_gi_b) if props is not None else 0,
            provisioning_state=_text(props.provisioning_state) if props is not None else "",
            target_iqn=str(target.target_iqn or "") if target is not None else "",
            target_portal_hostname=str(target.target_portal_hostname or "") if target is not None else "",
            target_portal_port=int(target.target_portal_port or 0) if target is not None else 0,
            source=self._volume_source(props.creation_data if props is not None else None),
        )

    def _volume_source(self, data: em.SourceCreationData | None) -> VolumeSource | None:
        if data is None or not data.source_id:
            return None
        kind = _text(data.create_source).lower()
        try:
            if kind == em.VolumeCreateOption.VOLUME_SNAPSHOT.value.lower():
                return SnapshotId.parse(data.source_id, self.config.subscription_id)
            if kind == em.VolumeCreateOption.DISK_SNAPSHOT.value.lower():
                return DiskSnapshotId.parse(data.source_id, self.config.subscription_id)
        except InvalidRequest:
            log.warning("volume source %r is not an ID this operator knows", data.source_id)
        return None

    def _snapshot_info(self, model: em.Snapshot, snapshot: SnapshotId) -> SnapshotInfo:
        props = model.properties
        source_id = props.creation_data.source_id if props is not None else ""
        created = model.system_data.created_at if model.system_data is not None else None
        return SnapshotInfo(
            id=snapshot,
            source_volume=VolumeId.parse(str(source_id), self.config.subscription_id),
            source_volume_size_gib=int(props.source_volume_size_gi_b or 0) if props is not None else 0,
            provisioning_state=_text(props.provisioning_state) if props is not None else "",
            created_at=created,
        )

    def _disk_snapshot_info(self, model: cm.Snapshot, disk_snapshot: DiskSnapshotId) -> DiskSnapshotInfo:
        props = model.properties
        state = _text(props.provisioning_state) if props is not None else ""
        percent = props.completion_percent if props is not None else None
        if percent is None:
            # Only copies report progress; a finished snapshot without the field is complete.
            percent = 100.0 if state == "Succeeded" else 0.0
        source: SnapshotId | None = None
        san_id = props.creation_data.elastic_san_resource_id if props is not None else None
        if san_id:
            try:
                source = SnapshotId.parse("/" + san_id.lstrip("/"), self.config.subscription_id)
            except InvalidRequest:
                source = None
        copy_error = props.copy_completion_error if props is not None else None
        return DiskSnapshotInfo(
            id=disk_snapshot,
            location=str(model.location),
            provisioning_state=state,
            completion_percent=float(percent),
            source=source,
            size_gib=props.disk_size_gb if props is not None else None,
            created_at=props.time_created if props is not None else None,
            copy_error=f"{_text(copy_error.error_code)}: {copy_error.error_message}" if copy_error else None,
            tags=dict(model.tags or {}),
        )


def _describe(source: VolumeSource | None) -> str:
    return source.arm_id if source is not None else "no source"


def _creation_data(source: VolumeSource | None) -> em.SourceCreationData | None:
    if source is None:
        return None
    if isinstance(source, SnapshotId):
        kind = em.VolumeCreateOption.VOLUME_SNAPSHOT
    else:
        kind = em.VolumeCreateOption.DISK_SNAPSHOT
    return em.SourceCreationData(create_source=kind, source_id=source.arm_id)


def _on_response(response: PipelineResponse[Any, Any]) -> None:
    """Per HTTP exchange (retries and polls included): remember the request ID, count 429s."""
    http = response.http_response
    headers = http.headers
    req_id = request_id(headers)
    _last_request_id.set(req_id)
    status = http.status_code
    _last_status.set(status)
    if status == 429:
        metrics.AZURE_THROTTLED_RESPONSES.inc()
    # Path only: the query holds nothing secret but adds noise; headers (tokens) are never logged.
    url = http.request.url.split("?", 1)[0]
    log.debug("azure http %s %s -> %s (request id %s)", http.request.method, url, status, req_id or "-")


__all__ = ["ElasticSanAzure"]
