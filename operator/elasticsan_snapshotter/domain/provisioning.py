"""New volumes: where they go, how large they are, and what they may be restored from.

The operator's provisioner and the CSI controller's ``CreateVolume`` both plan a
volume here, so a StorageClass means the same in both modes and both make the same
checks before anything is created in Azure:

* placement: parameter ``elasticSanId`` (an ARM ID, or the name of a managed SAN),
  else the source snapshot's SAN, else the first managed SAN; parameter
  ``volumeGroup``, else the source snapshot's group (same SAN), else the SAN's only
  group;
* region: a volume is made from a snapshot only in the region the snapshot is in;
* sources: an Elastic SAN snapshot that Azure reports ``Succeeded``, or a managed-disk
  snapshot whose copy is done;
* size: whole GiB, never smaller than the source, within the caller's limit and
  Elastic SAN's 1 GiB to 64 TiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from elasticsan_snapshotter.domain import decisions, parameters
from elasticsan_snapshotter.domain.errors import InvalidRequest, Transient
from elasticsan_snapshotter.domain.identity import (
    DiskSnapshotId,
    ElasticSanId,
    SnapshotId,
    VolumeGroupId,
    VolumeId,
)
from elasticsan_snapshotter.domain.ports import AzurePort, VolumeSource


class CapacityOutOfRange(InvalidRequest):
    """No whole-GiB size between the source's size, the caller's limit and 64 TiB fits."""

    reason = "CapacityOutOfRange"


@dataclass(frozen=True)
class SizeRequest:
    """What the caller asks for, in bytes; 0 means no minimum (the source decides) or no limit."""

    required_bytes: int = 0
    limit_bytes: int = 0


@dataclass(frozen=True)
class VolumePlan:
    """A volume to create: checked, placed and sized."""

    volume: VolumeId
    size_gib: int
    source: VolumeSource | None
    source_size_gib: int | None = None
    """The source's size (None for an empty volume): a larger volume has a file system to grow."""


# --- size -------------------------------------------------------------------------------------


def volume_size_gib(size: SizeRequest, source_gib: int = 0) -> int:
    """Whole GiB for a new volume: the request rounded up, at least the source's ``source_gib``."""
    required, limit = size.required_bytes, size.limit_bytes
    if required < 0 or limit < 0:
        raise InvalidRequest("a volume size must not be negative")
    if limit and required > limit:
        raise InvalidRequest(f"required size {required} bytes is larger than the limit, {limit} bytes")
    source_bytes = decisions.gib_to_bytes(source_gib)
    if required and required < source_bytes:
        [asked] = decisions.sizes_in_one_unit(required)
        raise InvalidRequest(
            f"the request is {asked}, smaller than the source snapshot's {source_gib}Gi; "
            f"request at least {source_gib}Gi"
        )
    gib = max(decisions.bytes_to_gib(required), source_gib, decisions.MIN_VOLUME_GIB)
    if limit and decisions.gib_to_bytes(gib) > limit:
        raise CapacityOutOfRange(
            f"the smallest fitting size is {gib} GiB ({decisions.gib_to_bytes(gib)} bytes), above the limit "
            f"of {limit} bytes"
        )
    if gib > decisions.MAX_VOLUME_GIB:
        raise CapacityOutOfRange(
            f"{gib} GiB is more than the largest Elastic SAN volume, {decisions.MAX_VOLUME_GIB} GiB (64 TiB)"
        )
    return gib


# --- placement --------------------------------------------------------------------------------


def choose_san(
    wanted: str | None, managed: Sequence[ElasticSanId], source: VolumeSource | None = None
) -> ElasticSanId:
    """The SAN a new volume goes to: the parameter, else the source snapshot's SAN, else the first managed one."""
    if wanted:
        for san in managed:
            if wanted.lower() in (san.name.lower(), san.arm_id.lower()):
                return san
        if wanted.startswith("/"):
            try:
                return ElasticSanId.parse(wanted)
            except InvalidRequest as exc:
                raise parameters.InvalidParameter(f"parameter {parameters.ELASTIC_SAN}: {exc}") from None
        names = ", ".join(s.name for s in managed) or "none"
        raise parameters.InvalidParameter(
            f"parameter {parameters.ELASTIC_SAN} {wanted!r} is neither an Elastic SAN ARM ID nor the name of "
            f"a managed Elastic SAN (managed: {names})"
        )
    if isinstance(source, SnapshotId):
        return source.volume_group.san
    if managed:
        return managed[0]
    raise InvalidRequest(
        f"no Elastic SAN to put the volume in: set parameter {parameters.ELASTIC_SAN} (the Elastic SAN's "
        "ARM ID), or configure managed Elastic SANs"
    )


def only_group(san: ElasticSanId, groups: Sequence[VolumeGroupId]) -> VolumeGroupId:
    """Without parameter ``volumeGroup``, a SAN with exactly one volume group means that one."""
    if len(groups) != 1:
        raise InvalidRequest(
            f"Elastic SAN {san.arm_id} has {len(groups)} volume groups; set parameter "
            f"{parameters.VOLUME_GROUP} to choose one"
        )
    return groups[0]


async def place(
    azure: AzurePort,
    params: parameters.StorageClassParameters,
    source: VolumeSource | None,
    managed: Sequence[ElasticSanId],
) -> VolumeGroupId:
    """The volume group a new volume goes to (lists the SAN's groups only when none is named)."""
    san = choose_san(params.elastic_san, managed, source)
    if params.volume_group:
        try:
            return san.volume_group(params.volume_group)
        except InvalidRequest as exc:
            raise parameters.InvalidParameter(f"parameter {parameters.VOLUME_GROUP}: {exc}") from None
    if isinstance(source, SnapshotId) and source.volume_group.san == san:
        return source.volume_group
    return only_group(san, await azure.list_volume_groups(san))


# --- restores ---------------------------------------------------------------------------------


def check_region(source_region: str, target_region: str, source: VolumeSource) -> None:
    """Elastic SAN makes a volume from a snapshot only in the snapshot's region."""
    if not decisions.same_region(source_region, target_region):
        raise InvalidRequest(
            f"snapshot {source.arm_id} is in region {source_region!r} but the target Elastic SAN is in "
            f"{target_region!r}; a volume is made from a snapshot only in the same region"
        )


async def plan_volume(
    azure: AzurePort,
    *,
    name: str,
    params: parameters.StorageClassParameters,
    source: VolumeSource | None,
    size: SizeRequest,
    managed: Sequence[ElasticSanId],
) -> VolumePlan:
    """Check, place and size a new volume named ``name``, empty or restored from ``source``."""
    group = await place(azure, params, source, managed)
    volume = group.volume(name)
    if source is None:
        return VolumePlan(volume, volume_size_gib(size), None)
    target = await azure.get_elastic_san(group.san)
    if isinstance(source, DiskSnapshotId):
        disk = await azure.get_disk_snapshot(source)
        gib = volume_size_gib(size, disk.size_gib or 0)
        decisions.check_volume_from_disk_snapshot(
            requested_gib=gib, disk_snapshot=disk, target_region=target.location
        )
        return VolumePlan(volume, gib, source, disk.size_gib)
    snapshot = await azure.get_snapshot(source)
    if not decisions.snapshot_ready(snapshot):  # a failed one raises: it never will be
        raise Transient(
            f"source snapshot {source.arm_id} is {snapshot.provisioning_state or 'not ready'}, not Succeeded yet"
        )
    same_san = source.volume_group.san == group.san
    origin = target if same_san else await azure.get_elastic_san(source.volume_group.san)
    check_region(origin.location, target.location, source)
    gib = snapshot.source_volume_size_gib
    return VolumePlan(volume, volume_size_gib(size, gib), source, gib)


__all__ = [
    "CapacityOutOfRange",
    "SizeRequest",
    "VolumePlan",
    "check_region",
    "choose_san",
    "only_group",
    "place",
    "plan_volume",
    "volume_size_gib",
]
