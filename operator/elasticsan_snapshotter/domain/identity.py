"""Identities of Azure resources: ARM IDs and the compact handles used in CSI.

ARM treats resource IDs case-insensitively, so these identities compare and
hash without regard to case while keeping the spelling they were given.

Compact handles fit the CSI limit of 128 bytes. They name the subscription
where it fits, so that a handle stored elsewhere (a Velero backup restored by an
operator configured for another default subscription) still names the same
resource; where it does not fit, the subscription comes from configuration:

====================  ====================================  ==========================
resource              compact handle                        ARM ID
====================  ====================================  ==========================
Elastic SAN volume    ``sub#rg#san#volumeGroup#volume``     ``/subscriptions/…/volumes/<volume>``
volume snapshot       ``sub#rg#san#volumeGroup#snapshot``   ``/subscriptions/…/snapshots/<snapshot>``
managed-disk snapshot ``sub#rg#snapshot``                   ``/subscriptions/…/Microsoft.Compute/snapshots/<name>``
====================  ====================================  ==========================

Without the leading ``sub#`` (the form before subscriptions were included, and
the fallback for long names) the configured subscription is meant. Volumes and
volume snapshots share a shape; the context (a volume handle or a snapshot
handle) tells them apart. Wherever a handle comes in, every form is accepted,
the full ARM ID included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from elasticsan_snapshotter.domain.errors import InvalidRequest, quote

_Id = TypeVar("_Id")

CSI_MAX_BYTES = 128
SEPARATOR = "#"

_SEG = r"([^/]+)"
_SUB_RG = rf"/subscriptions/{_SEG}/resourceGroups/{_SEG}"
_SAN = rf"{_SUB_RG}/providers/Microsoft\.ElasticSan/elasticSans/{_SEG}"
_VG = rf"{_SAN}/volumeGroups/{_SEG}"
_PATTERNS = {
    "san": re.compile(rf"^{_SAN}/?$", re.IGNORECASE),
    "volume_group": re.compile(rf"^{_VG}/?$", re.IGNORECASE),
    "volume": re.compile(rf"^{_VG}/volumes/{_SEG}/?$", re.IGNORECASE),
    "snapshot": re.compile(rf"^{_VG}/snapshots/{_SEG}/?$", re.IGNORECASE),
    "disk_snapshot": re.compile(
        rf"^{_SUB_RG}/providers/Microsoft\.Compute/snapshots/{_SEG}/?$", re.IGNORECASE
    ),
}
# Resource group names: 1-90 of alphanumerics, '_', '-', '.', '(' and ')', not ending in '.'.
_RG_NAME = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
# Subscription IDs are GUIDs; only a GUID leads a handle, so ``sub#`` never reads as a name.
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class _CaseInsensitive:
    """Equality and hashing over the lower-cased identity, as ARM compares IDs."""

    def _parts(self) -> tuple[str, ...]:
        raise NotImplementedError  # every subclass defines its parts

    def _key(self) -> tuple[str, ...]:
        return tuple(p.lower() for p in self._parts())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _CaseInsensitive)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._key()))


def _check_segment(kind: str, value: str) -> str:
    if not value or "/" in value or SEPARATOR in value or value != value.strip():
        raise InvalidRequest(f"invalid {kind} name {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class _ResourceGroupChild(_CaseInsensitive):
    """A resource directly in a resource group: ``/subscriptions/…/resourceGroups/…/providers/<type>/<name>``."""

    subscription: str
    resource_group: str
    name: str

    _kind = "Elastic SAN"
    _type = "Microsoft.ElasticSan/elasticSans"

    def __post_init__(self) -> None:
        _check_segment("subscription", self.subscription)
        if not _RG_NAME.match(self.resource_group):
            raise InvalidRequest(f"invalid resource group name {self.resource_group!r}")
        _check_segment(self._kind, self.name)

    def _parts(self) -> tuple[str, ...]:
        return (self.subscription, self.resource_group, self.name)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{self._type}/{self.name}"
        )


@dataclass(frozen=True, eq=False)
class ElasticSanId(_ResourceGroupChild):
    def volume_group(self, name: str) -> VolumeGroupId:
        return VolumeGroupId(self, name)

    @classmethod
    def parse(cls, arm_id: str) -> ElasticSanId:
        sub, rg, san = _match("san", arm_id, "an Elastic SAN")
        return cls(sub, rg, san)


@dataclass(frozen=True, eq=False)
class VolumeGroupId(_CaseInsensitive):
    san: ElasticSanId
    name: str

    def __post_init__(self) -> None:
        _check_segment("volume group", self.name)

    def _parts(self) -> tuple[str, ...]:
        return (*self.san._parts(), self.name)

    @property
    def arm_id(self) -> str:
        # ARM paths spell this segment in lower case; the resource type is "volumeGroups".
        return f"{self.san.arm_id}/volumegroups/{self.name}"

    def volume(self, name: str) -> VolumeId:
        return VolumeId(self, name)

    def snapshot(self, name: str) -> SnapshotId:
        return SnapshotId(self, name)

    @classmethod
    def parse(cls, arm_id: str) -> VolumeGroupId:
        sub, rg, san, vg = _match("volume_group", arm_id, "an Elastic SAN volume group")
        return cls(ElasticSanId(sub, rg, san), vg)


@dataclass(frozen=True, eq=False)
class _VolumeGroupChild(_CaseInsensitive):
    volume_group: VolumeGroupId
    name: str

    _kind = "volume"
    _segment = "volumes"
    _pattern = "volume"

    def __post_init__(self) -> None:
        _check_segment(self._kind, self.name)

    @classmethod
    def parse(cls, value: str, default_subscription: str) -> Self:
        """Parse an ARM ID or a compact handle of this kind."""
        if value.startswith("/"):
            sub, rg, san, vg, name = _match(cls._pattern, value, f"an Elastic SAN {cls._kind}")
        else:
            sub, rg, san, vg, name = _split_handle(value, 4, cls._kind, default_subscription)
        return cls(VolumeGroupId(ElasticSanId(sub, rg, san), vg), name)

    def _parts(self) -> tuple[str, ...]:
        return (*self.volume_group._parts(), self.name)

    @property
    def subscription(self) -> str:
        return self.volume_group.san.subscription

    @property
    def arm_id(self) -> str:
        return f"{self.volume_group.arm_id}/{self._segment}/{self.name}"

    def handle(self, default_subscription: str) -> str:
        """The compact handle, with the subscription where it fits (see the module docstring)."""
        vg = self.volume_group
        parts = (vg.san.resource_group, vg.san.name, vg.name, self.name)
        return _handle(self.subscription, parts, default_subscription, self.arm_id, self._kind)


@dataclass(frozen=True, eq=False)
class VolumeId(_VolumeGroupChild):
    """An Elastic SAN volume."""


@dataclass(frozen=True, eq=False)
class SnapshotId(_VolumeGroupChild):
    """An Elastic SAN volume snapshot (it lives in the volume group of its source volume)."""

    _kind = "volume snapshot"
    _segment = "snapshots"
    _pattern = "snapshot"


@dataclass(frozen=True, eq=False)
class DiskSnapshotId(_ResourceGroupChild):
    """A managed-disk snapshot (``Microsoft.Compute/snapshots``), the target of an export."""

    _kind = "managed-disk snapshot"
    _type = "Microsoft.Compute/snapshots"

    def handle(self, default_subscription: str) -> str:
        parts = (self.resource_group, self.name)
        return _handle(self.subscription, parts, default_subscription, self.arm_id, self._kind)

    @classmethod
    def parse(cls, value: str, default_subscription: str) -> DiskSnapshotId:
        if value.startswith("/"):
            sub, rg, name = _match("disk_snapshot", value, "a managed-disk snapshot")
            return cls(sub, rg, name)
        sub, rg, name = _split_handle(value, 2, "managed-disk snapshot", default_subscription)
        return cls(sub, rg, name)


def parse_snapshot_handle(value: str, default_subscription: str) -> SnapshotId | DiskSnapshotId:
    """A snapshot handle names either an Elastic SAN snapshot or a managed-disk snapshot (import)."""
    if value.startswith("/"):
        if _PATTERNS["disk_snapshot"].match(value):
            return DiskSnapshotId.parse(value, default_subscription)
        return SnapshotId.parse(value, default_subscription)
    if value.count(SEPARATOR) in (1, 2):  # rg#name or sub#rg#name
        return DiskSnapshotId.parse(value, default_subscription)
    return SnapshotId.parse(value, default_subscription)


def try_parse(parse: Callable[[str, str], _Id], value: str, default_subscription: str) -> _Id | None:
    """``parse(value, default_subscription)``, or None where ``value`` is no such handle: it names nothing.

    The CSI controller answers that with NOT_FOUND or a no-op delete; the operator leaves such a
    resource alone, never its own to touch.
    """
    try:
        return parse(value, default_subscription)
    except InvalidRequest:
        return None


def _match(kind: str, value: str, what: str) -> tuple[Any, ...]:
    found = _PATTERNS[kind].match(value)
    if not found:
        raise InvalidRequest(f"{quote(value)} is not the ARM ID of {what}")
    return found.groups()


def _handle(
    subscription: str, parts: tuple[str, ...], default_subscription: str, arm_id: str, what: str
) -> str:
    """``sub#parts`` where it fits; else ``parts`` when the subscription is the configured one."""
    portable = SEPARATOR.join((subscription, *parts))
    if _GUID.match(subscription) and len(portable.encode()) <= CSI_MAX_BYTES:
        return portable
    if subscription.lower() == default_subscription.lower():
        return _fit(SEPARATOR.join(parts), what)
    return _fit(arm_id, what)  # longer still than the portable form: refused with the reason


def _split_handle(value: str, parts: int, what: str, default_subscription: str) -> list[str]:
    """The subscription and ``parts`` pieces of a handle with or without its leading subscription."""
    pieces = value.split(SEPARATOR)
    if len(pieces) == parts:
        pieces.insert(0, default_subscription)
    elif pieces and not _GUID.match(pieces[0]):
        pieces = []
    if len(pieces) != parts + 1 or not all(pieces):
        raise InvalidRequest(
            f"{quote(value)} is not a {what} handle: expected {parts} non-empty parts separated by "
            f"{SEPARATOR!r} (or {parts + 1} with the subscription ID first), or a full ARM resource ID"
        )
    return pieces


def _fit(value: str, what: str) -> str:
    if len(value.encode()) > CSI_MAX_BYTES:
        # Only resources outside the configured subscription get full ARM IDs as handles.
        hint = (
            "the resource is outside the configured subscription, so its handle is the full ARM ID; "
            "configure that subscription or use resources in the configured one"
            if value.startswith("/")
            else "use shorter resource group, SAN or volume group names"
        )
        raise InvalidRequest(
            f"the {what} handle {quote(value, 200)} is {len(value.encode())} bytes, more than the "
            f"{CSI_MAX_BYTES} bytes CSI allows; {hint}"
        )
    return value


__all__ = [
    "CSI_MAX_BYTES",
    "DiskSnapshotId",
    "ElasticSanId",
    "SnapshotId",
    "VolumeGroupId",
    "VolumeId",
    "parse_snapshot_handle",
    "try_parse",
]
