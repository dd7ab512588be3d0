"""The CSI Controller service: volumes and snapshots of Azure Elastic SAN.

Every handler validates the request, takes the per-ID guard, checks for an existing
resource by its deterministic name (the port's creates adopt one made from the same
source), acts and answers. Azure holds all state; this process holds none but the
guard, so any replica can answer any call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from elasticsan_snapshotter.csi._stubs import pb, pb_grpc
from elasticsan_snapshotter.csi.errors import InvalidPageToken
from elasticsan_snapshotter.csi.inflight import InFlight
from elasticsan_snapshotter.csi.naming import snapshot_name, volume_name
from elasticsan_snapshotter.csi.rpc import rpc
from elasticsan_snapshotter.domain import parameters, provisioning
from elasticsan_snapshotter.domain.decisions import GIB, SnapshotFailed, restore_size_bytes, snapshot_ready
from elasticsan_snapshotter.domain.errors import InvalidRequest, NotFound
from elasticsan_snapshotter.domain.identity import (
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
    parse_snapshot_handle,
    try_parse,
)
from elasticsan_snapshotter.domain.mapping import iscsi_volume_attributes
from elasticsan_snapshotter.domain.ports import AzurePort, SnapshotInfo, VolumeSource

log = logging.getLogger(__name__)

_Parsed = TypeVar("_Parsed", parameters.StorageClassParameters, parameters.SnapshotClassParameters)
_Id = TypeVar("_Id")


def _known(parsed: _Parsed, known: Mapping[str, str]) -> _Parsed:
    """CSI has no channel but the error to report a key nobody reads, so an unknown one is refused."""
    if parsed.unknown:
        raise InvalidRequest(parameters.unknown_message(parsed.unknown, known, "the request"))
    return parsed


Mode = pb.VolumeCapability.AccessMode
# An Elastic SAN volume reached through iscsi.csi.k8s.io is attached to one node at a time.
SUPPORTED_ACCESS_MODES = frozenset(
    {
        Mode.SINGLE_NODE_WRITER,
        Mode.SINGLE_NODE_READER_ONLY,
        Mode.SINGLE_NODE_SINGLE_WRITER,
        Mode.SINGLE_NODE_MULTI_WRITER,
    }
)
CONTROLLER_CAPABILITIES = (
    pb.ControllerServiceCapability.RPC.CREATE_DELETE_VOLUME,
    pb.ControllerServiceCapability.RPC.CREATE_DELETE_SNAPSHOT,
    pb.ControllerServiceCapability.RPC.LIST_SNAPSHOTS,
)


class ControllerServicer(pb_grpc.ControllerServicer):
    """Handlers for the advertised RPCs; the generated base answers UNIMPLEMENTED for the rest."""

    def __init__(self, azure: AzurePort, subscription_id: str, managed_sans: Sequence[ElasticSanId]) -> None:
        self._azure = azure
        self._subscription = subscription_id
        self._managed_sans = list(managed_sans)
        self._inflight = InFlight()

    # --- capabilities ---------------------------------------------------------------------

    @rpc
    async def ControllerGetCapabilities(
        self, request: pb.ControllerGetCapabilitiesRequest, context: Any
    ) -> pb.ControllerGetCapabilitiesResponse:
        return pb.ControllerGetCapabilitiesResponse(
            capabilities=[
                pb.ControllerServiceCapability(rpc=pb.ControllerServiceCapability.RPC(type=kind))
                for kind in CONTROLLER_CAPABILITIES
            ]
        )

    # --- volumes --------------------------------------------------------------------------

    @rpc
    async def CreateVolume(self, request: pb.CreateVolumeRequest, context: Any) -> pb.CreateVolumeResponse:
        if not request.name:
            raise InvalidRequest("name is required")
        if not request.volume_capabilities:
            raise InvalidRequest("volume_capabilities are required")
        problem = unsupported_capability(request.volume_capabilities)
        if problem:
            raise InvalidRequest(problem)
        params = _known(parameters.parse_storage_class(request.parameters), parameters.STORAGE_CLASS_KEYS)
        range_ = request.capacity_range
        plan = await provisioning.plan_volume(
            self._azure,
            name=volume_name(request.name),
            params=params,
            source=self._content_source(request),
            size=provisioning.SizeRequest(range_.required_bytes, range_.limit_bytes),
            managed=self._managed_sans,
        )
        async with self._inflight.hold(plan.volume.arm_id):
            info = await self._azure.create_volume(plan.volume, plan.size_gib, plan.source)
        content = request.volume_content_source if request.HasField("volume_content_source") else None
        return pb.CreateVolumeResponse(
            volume=pb.Volume(
                capacity_bytes=info.size_gib * GIB,
                volume_id=info.id.handle(self._subscription),
                volume_context=iscsi_volume_attributes(info),
                content_source=content,
            )
        )

    def _content_source(self, request: pb.CreateVolumeRequest) -> VolumeSource | None:
        """The snapshot ``volume_content_source`` names; the plan checks it is one to restore from."""
        if not request.HasField("volume_content_source"):
            return None
        content = request.volume_content_source
        if not content.HasField("snapshot"):
            raise InvalidRequest(
                "only snapshots can be volume content sources; cloning volumes is not supported"
            )
        return self._existing(parse_snapshot_handle, content.snapshot.snapshot_id, "source snapshot")

    @rpc
    async def DeleteVolume(self, request: pb.DeleteVolumeRequest, context: Any) -> pb.DeleteVolumeResponse:
        volume = self._named(VolumeId.parse, request.volume_id, "volume_id")
        if volume is not None:
            # Never silently: the port refuses a volume with snapshots (FAILED_PRECONDITION), as CSI asks.
            await self._deleted(volume, lambda: self._azure.delete_volume(volume, delete_snapshots=False))
        return pb.DeleteVolumeResponse()

    @rpc
    async def ValidateVolumeCapabilities(
        self, request: pb.ValidateVolumeCapabilitiesRequest, context: Any
    ) -> pb.ValidateVolumeCapabilitiesResponse:
        volume = self._existing(VolumeId.parse, request.volume_id, "volume", field="volume_id")
        if not request.volume_capabilities:
            raise InvalidRequest("volume_capabilities are required")
        await self._azure.get_volume(volume)
        problem = unsupported_capability(request.volume_capabilities)
        if problem:
            return pb.ValidateVolumeCapabilitiesResponse(message=problem)
        confirmed = pb.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context,
            volume_capabilities=request.volume_capabilities,
            parameters=request.parameters,
        )
        return pb.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    # --- snapshots ------------------------------------------------------------------------

    @rpc
    async def CreateSnapshot(
        self, request: pb.CreateSnapshotRequest, context: Any
    ) -> pb.CreateSnapshotResponse:
        if not request.name:
            raise InvalidRequest("name is required")
        source = self._existing(
            VolumeId.parse, request.source_volume_id, "source volume", field="source_volume_id"
        )
        _known(parameters.parse_snapshot_class(request.parameters), parameters.SNAPSHOT_CLASS_KEYS)
        # Elastic SAN keeps a snapshot in the volume group of its volume.
        snapshot = source.volume_group.snapshot(snapshot_name(request.name))
        snapshot.handle(self._subscription)  # refuse before acting if the handle cannot fit CSI's limit
        async with self._inflight.hold(snapshot.arm_id):
            info = await self._azure.create_snapshot(snapshot, source)
        # A failed snapshot raises here: re-issuing the same request cannot make it ready.
        return pb.CreateSnapshotResponse(snapshot=self._snapshot(info, snapshot_ready(info)))

    @rpc
    async def DeleteSnapshot(
        self, request: pb.DeleteSnapshotRequest, context: Any
    ) -> pb.DeleteSnapshotResponse:
        snapshot = self._named(SnapshotId.parse, request.snapshot_id, "snapshot_id")
        if snapshot is not None:
            await self._deleted(snapshot, lambda: self._azure.delete_snapshot(snapshot))
        return pb.DeleteSnapshotResponse()

    # --- what every handler shares ------------------------------------------------------------

    def _named(self, parse: Callable[[str, str], _Id], value: str, field: str) -> _Id | None:
        """The ID a request field holds (required); None when it is no handle, so it names nothing."""
        if not value:
            raise InvalidRequest(f"{field} is required")
        found = try_parse(parse, value, self._subscription)
        if found is None:
            log.info("%s %r is not a handle of this plugin, so it names nothing", field, value)
        return found

    def _existing(self, parse: Callable[[str, str], _Id], value: str, what: str, *, field: str = "") -> _Id:
        """Like :meth:`_named`, for calls that need the resource: a value that is no handle is NOT_FOUND."""
        found = self._named(parse, value, field or what)
        if found is None:
            raise NotFound(f"{what} {value!r} not found: it is not a handle of this plugin")
        return found

    async def _deleted(self, target: VolumeId | SnapshotId, delete: Callable[[], Awaitable[None]]) -> None:
        """Run a delete under the ID's guard; a resource that is gone already counts as deleted."""
        async with self._inflight.hold(target.arm_id):
            with contextlib.suppress(NotFound):
                await delete()

    @rpc
    async def ListSnapshots(self, request: pb.ListSnapshotsRequest, context: Any) -> pb.ListSnapshotsResponse:
        if request.max_entries < 0:
            raise InvalidRequest("max_entries must not be negative")
        found = [s for s in await self._snapshots_for(request) if _ready_or_failed(s) is not None]
        entries = sorted(self._entries(found), key=lambda e: e.snapshot.snapshot_id.lower())
        start = page_start(request.starting_token, len(entries))
        end = len(entries) if not request.max_entries else min(len(entries), start + request.max_entries)
        return pb.ListSnapshotsResponse(
            entries=entries[start:end], next_token=str(end) if end < len(entries) else ""
        )

    async def _snapshots_for(self, request: pb.ListSnapshotsRequest) -> list[SnapshotInfo]:
        """Snapshots matching the filters; unknown or malformed IDs simply match nothing."""
        try:
            if request.snapshot_id:
                snapshot = await self._azure.get_snapshot(
                    SnapshotId.parse(request.snapshot_id, self._subscription)
                )
                wanted = request.source_volume_id
                if wanted and snapshot.source_volume != VolumeId.parse(wanted, self._subscription):
                    return []
                return [snapshot]
            if request.source_volume_id:
                volume = VolumeId.parse(request.source_volume_id, self._subscription)
                return await self._azure.list_snapshots(volume.volume_group, volume.name)
        except (InvalidRequest, NotFound):
            return []
        return await self._all_snapshots()

    async def _all_snapshots(self) -> list[SnapshotInfo]:
        sans = self._managed_sans or [s.id for s in await self._azure.list_elastic_sans()]
        found: list[SnapshotInfo] = []
        for san in sans:
            for group in await _groups_or_none(self._azure, san):
                try:
                    found.extend(await self._azure.list_snapshots(group))
                except NotFound:
                    continue  # the group went away while we were listing
        return found

    def _entries(self, snapshots: Iterable[SnapshotInfo]) -> list[pb.ListSnapshotsResponse.Entry]:
        entries = []
        for info in snapshots:
            try:
                snapshot = self._snapshot(info, bool(_ready_or_failed(info)))
            except InvalidRequest as error:
                log.warning("not listing snapshot %s: %s", info.id.arm_id, error)
                continue
            entries.append(pb.ListSnapshotsResponse.Entry(snapshot=snapshot))
        return entries

    def _snapshot(self, info: SnapshotInfo, ready: bool) -> pb.Snapshot:
        created = Timestamp()
        created.FromDatetime(info.created_at or datetime.now(UTC))
        return pb.Snapshot(
            size_bytes=restore_size_bytes(info.source_volume_size_gib),
            snapshot_id=info.id.handle(self._subscription),
            source_volume_id=info.source_volume.handle(self._subscription),
            creation_time=created,
            ready_to_use=ready,
        )


# --- pure helpers -------------------------------------------------------------------------


def unsupported_capability(capabilities: Iterable[pb.VolumeCapability]) -> str:
    """Why one of ``capabilities`` cannot be served, or ``""`` when all can."""
    for capability in capabilities:
        if not (capability.HasField("mount") or capability.HasField("block")):
            return "a volume capability needs an access type, mount or block"
        mode = capability.access_mode.mode
        if mode not in SUPPORTED_ACCESS_MODES:
            return (
                f"access mode {Mode.Mode.Name(mode)} is not supported: an Elastic SAN volume attaches "
                "to a single node"
            )
    return ""


def page_start(token: str, total: int) -> int:
    """The offset a ``starting_token`` stands for; tokens are offsets this service handed out."""
    if not token:
        return 0
    if not token.isdigit() or int(token) > total:
        raise InvalidPageToken(f"starting_token {token!r} is not valid for this listing")
    return int(token)


def _ready_or_failed(snapshot: SnapshotInfo) -> bool | None:
    """Ready (True), still being cut (False), or failed (None: not listed, not restorable)."""
    try:
        return snapshot_ready(snapshot)
    except SnapshotFailed:
        return None


async def _groups_or_none(azure: AzurePort, san: ElasticSanId) -> list[VolumeGroupId]:
    try:
        return await azure.list_volume_groups(san)
    except NotFound:
        log.warning("managed Elastic SAN %s not found; listing no snapshots from it", san.arm_id)
        return []


__all__ = [
    "CONTROLLER_CAPABILITIES",
    "SUPPORTED_ACCESS_MODES",
    "ControllerServicer",
    "page_start",
    "unsupported_capability",
]
