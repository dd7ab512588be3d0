"""From a PersistentVolume to the Elastic SAN volume behind it.

Tried in this order:

1. the annotation ``elasticsan.snapshotter.dev/volume-id`` (a full ARM ID);
2. ``spec.csi.volumeHandle`` when it is an ARM ID or a compact handle (volumes we provisioned);
3. the iSCSI target (``iqn`` and ``targetPortal`` of ``iscsi.csi.k8s.io`` volume attributes, or
   an in-tree ``spec.iscsi``) looked up in a :class:`SanIndex` of the managed Elastic SANs.

The index is filled from list calls and refreshed after a TTL or on a miss, with misses
rate-limited, so the number of list calls does not grow with the number of snapshots.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsan_snapshotter.domain.errors import InvalidRequest, NotFound, SnapshotterError, Transient, quote
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.ports import AzurePort, VolumeInfo

VOLUME_ID_ANNOTATION = "elasticsan.snapshotter.dev/volume-id"
ISCSI_DRIVER = "iscsi.csi.k8s.io"
ISCSI_DEFAULT_PORT = 3260


class UnmappedVolume(InvalidRequest):
    """Nothing ties the PersistentVolume to an Elastic SAN volume the operator manages."""

    reason = "UnmappedVolume"


class IndexRefreshPending(Transient):
    """A lookup missed an index that was refreshed too recently to refresh again; retry later."""

    reason = "IndexRefreshPending"


class UnmanagedElasticSan(InvalidRequest):
    """The PersistentVolume's volume lives in an Elastic SAN the operator is not configured to manage."""

    reason = "UnmanagedElasticSan"


# --- iSCSI targets --------------------------------------------------------------------------


def normalise_iqn(iqn: str) -> str:
    """IQNs compare without regard to case (RFC 3720 §3.2.6.1)."""
    return iqn.strip().lower()


def normalise_portal(portal: str) -> str:
    """``host[:port]`` with a lower-case host and the iSCSI port 3260 made explicit.

    IPv6 hosts keep their brackets: ``[fd00::1]:3260``.
    """
    text = portal.strip()
    if not text:
        raise InvalidRequest("empty iSCSI target portal")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise InvalidRequest(f"{portal!r} is not an iSCSI portal (expected [ipv6]:port)")
        host, port_text = f"[{host}]", rest[1:]
    elif text.count(":") > 1:
        host, port_text = f"[{text}]", ""  # a bare IPv6 address
    else:
        host, _, port_text = text.partition(":")
        if not host:
            raise InvalidRequest(f"{portal!r} is not an iSCSI portal (expected host:port)")
    port = ISCSI_DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidRequest(f"{portal!r} has an invalid port {port_text!r}")
        port = int(port_text)
    return f"{host.lower()}:{port}"


@dataclass(frozen=True)
class IscsiTarget:
    """An iSCSI target as a PersistentVolume names it, normalised for comparison."""

    iqn: str
    portal: str | None

    @classmethod
    def of(cls, iqn: str, portal: str | None) -> IscsiTarget:
        return cls(normalise_iqn(iqn), normalise_portal(portal) if portal else None)

    @classmethod
    def of_volume(cls, volume: VolumeInfo) -> IscsiTarget:
        return cls.of(volume.target_iqn, volume.target_portal)


def iscsi_volume_attributes(volume: VolumeInfo) -> dict[str, str]:
    """What csi-driver-iscsi's node plugin reads (PV ``volumeAttributes``, CSI volume context) to log in."""
    return {
        "targetPortal": volume.target_portal,
        "portals": "[]",
        "iqn": volume.target_iqn,
        "lun": "0",
        "iscsiInterface": "default",
        "discoveryCHAPAuth": "false",
        "sessionCHAPAuth": "false",
    }


# --- the index of managed SANs --------------------------------------------------------------


class SanIndex:
    """IQN -> volume for the managed Elastic SANs, filled by list calls and shared by all lookups.

    A lookup refreshes first when the index is older than ``ttl`` seconds. A miss refreshes
    once more, but at most once every ``miss_refresh_interval`` seconds, so a burst of unknown
    IQNs costs at most one round of list calls. Only one refresh runs at a time; lookups
    that waited for it use its result instead of starting another.
    """

    def __init__(
        self,
        azure: AzurePort,
        managed: Iterable[ElasticSanId],
        *,
        ttl: float = 600.0,
        miss_refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._azure = azure
        self.managed: frozenset[ElasticSanId] = frozenset(managed)
        self.ttl = ttl
        self.miss_refresh_interval = miss_refresh_interval
        self._clock = clock
        self._lock = asyncio.Lock()
        self._by_iqn: dict[str, list[VolumeInfo]] = {}
        self._refreshed_at: float | None = None
        self._failure: tuple[float, SnapshotterError] | None = None
        self.refresh_count = 0
        self.missing_sans: frozenset[ElasticSanId] = frozenset()
        """Managed SANs that did not exist at the last refresh."""

    def is_managed(self, san: ElasticSanId) -> bool:
        return san in self.managed

    @property
    def refreshed_at(self) -> float | None:
        return self._refreshed_at

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_iqn.values())

    async def refresh(self) -> None:
        """Rebuild the index now (waits for, then repeats after, a refresh already running)."""
        async with self._lock:
            await self._rebuild()
            self._failure = None

    async def lookup(self, target: IscsiTarget) -> VolumeInfo | None:
        """The managed volume behind ``target``, or ``None``.

        When a TTL refresh fails, a hit in the old index is still returned; a miss then raises
        the refresh's error, since the volume may exist.
        """
        stale_error: SnapshotterError | None = None
        now = self._clock()
        refreshes_before = self.refresh_count
        if self._refreshed_at is None or now - self._refreshed_at >= self.ttl:
            try:
                await self._refresh_if_older_than(None if self._refreshed_at is None else now - self.ttl)
            except SnapshotterError as exc:
                if self._refreshed_at is None:
                    raise
                stale_error = exc
        found = self._find(target)
        if found is not None:
            return found
        if stale_error is not None:
            raise stale_error
        now = self._clock()
        assert self._refreshed_at is not None  # set by the refresh above or earlier
        if self.refresh_count > refreshes_before:
            return None  # the index was rebuilt during this lookup: the miss is real
        age = now - self._refreshed_at
        if age < self.miss_refresh_interval:
            # The volume may be newer than the index; a miss is only trusted after a refresh.
            raise IndexRefreshPending(
                f"iSCSI target {target.iqn!r} is not in the index of managed Elastic SANs built "
                f"{age:.0f}s ago; looking again after the next refresh",
                retry_after=self.miss_refresh_interval - age,
            )
        await self._refresh_if_older_than(now - self.miss_refresh_interval)
        return self._find(target)

    def candidates(self, target: IscsiTarget) -> list[VolumeInfo]:
        """Volumes whose IQN matches, whatever their portal (to explain a portal mismatch)."""
        return list(self._by_iqn.get(target.iqn, ()))

    async def _refresh_if_older_than(self, limit: float | None) -> None:
        async with self._lock:
            # Another lookup may have refreshed while this one waited for the lock.
            if self._refreshed_at is not None and (limit is None or self._refreshed_at > limit):
                return
            # A failed refresh is not retried at once, so an outage does not multiply list calls.
            if self._failure is not None and self._clock() - self._failure[0] < self.miss_refresh_interval:
                raise copy.copy(self._failure[1])
            try:
                await self._rebuild()
            except SnapshotterError as exc:
                self._failure = (self._clock(), exc)
                raise
            self._failure = None

    async def _rebuild(self) -> None:
        by_iqn: dict[str, list[VolumeInfo]] = {}
        missing: set[ElasticSanId] = set()
        for san in sorted(self.managed, key=lambda s: s.arm_id.lower()):
            try:
                groups = await self._azure.list_volume_groups(san)
            except NotFound:
                missing.add(san)
                continue
            for group in groups:
                try:
                    volumes = await self._azure.list_volumes(group)
                except NotFound:
                    continue  # deleted between the two calls
                for volume in volumes:
                    by_iqn.setdefault(normalise_iqn(volume.target_iqn), []).append(volume)
        self._by_iqn = by_iqn
        self.missing_sans = frozenset(missing)
        self._refreshed_at = self._clock()
        self.refresh_count += 1

    def _find(self, target: IscsiTarget) -> VolumeInfo | None:
        for volume in self._by_iqn.get(target.iqn, ()):
            if target.portal is None or IscsiTarget.of_volume(volume).portal == target.portal:
                return volume
        return None


# --- PersistentVolume -> volume -------------------------------------------------------------


def _get(data: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _pv_name(pv: Mapping[str, Any]) -> str:
    return str(_get(pv, "metadata", "name") or "<unnamed>")


def iscsi_target_of(pv: Mapping[str, Any]) -> IscsiTarget | None:
    """The iSCSI target a PV names: CSI attributes of ``iscsi.csi.k8s.io`` or in-tree ``spec.iscsi``."""
    csi = _get(pv, "spec", "csi")
    if isinstance(csi, Mapping) and csi.get("driver") == ISCSI_DRIVER:
        attributes = csi.get("volumeAttributes") or {}
        iqn, portal = attributes.get("iqn"), attributes.get("targetPortal")
    else:
        iqn, portal = _get(pv, "spec", "iscsi", "iqn"), _get(pv, "spec", "iscsi", "targetPortal")
    if not isinstance(iqn, str) or not iqn.strip():
        return None
    return IscsiTarget.of(iqn, portal if isinstance(portal, str) and portal.strip() else None)


def _check_managed(volume: VolumeId, index: SanIndex, pv_name: str, how: str) -> VolumeId:
    san = volume.volume_group.san
    if not index.is_managed(san):
        raise UnmanagedElasticSan(
            f"PersistentVolume {pv_name} ({how}) is in Elastic SAN {san.arm_id}, which this operator "
            "does not manage; add it to the managed Elastic SANs in the operator's settings"
        )
    return volume


async def volume_of(pv: Mapping[str, Any], *, index: SanIndex, default_subscription: str) -> VolumeId:
    """The managed Elastic SAN volume behind a PersistentVolume, or a final error saying why not."""
    name = _pv_name(pv)
    annotation = _get(pv, "metadata", "annotations", VOLUME_ID_ANNOTATION)
    if annotation is not None:
        if not isinstance(annotation, str) or not annotation.startswith("/"):
            raise UnmappedVolume(
                f"PersistentVolume {name} has annotation {VOLUME_ID_ANNOTATION}={quote(annotation)}, which is "
                "not a full ARM ID; expected /subscriptions/<sub>/resourceGroups/<rg>/providers/"
                "Microsoft.ElasticSan/elasticSans/<san>/volumegroups/<vg>/volumes/<volume>"
            )
        try:
            volume = VolumeId.parse(annotation.strip(), default_subscription)
        except InvalidRequest as exc:
            raise UnmappedVolume(
                f"PersistentVolume {name} has annotation {VOLUME_ID_ANNOTATION} that is not usable: {exc}"
            ) from exc
        return _check_managed(volume, index, name, f"annotation {VOLUME_ID_ANNOTATION}")

    tried = [f"annotation {VOLUME_ID_ANNOTATION} (absent)"]
    handle = _get(pv, "spec", "csi", "volumeHandle")
    if isinstance(handle, str) and handle:
        try:
            volume = VolumeId.parse(handle, default_subscription)
        except InvalidRequest:
            tried.append(f"spec.csi.volumeHandle {quote(handle)} (neither an ARM ID nor a compact handle)")
        else:
            return _check_managed(volume, index, name, "spec.csi.volumeHandle")
    else:
        tried.append("spec.csi.volumeHandle (absent)")

    target = iscsi_target_of(pv)
    if target is None:
        tried.append(f"iSCSI attributes iqn/targetPortal of driver {ISCSI_DRIVER} or spec.iscsi (absent)")
    else:
        found = await index.lookup(target)
        if found is not None:
            return found.id
        tried.append(_explain_miss(target, index))
    raise UnmappedVolume(
        f"PersistentVolume {name} maps to no managed Elastic SAN volume. Tried: {'; '.join(tried)}. "
        f"Add annotation {VOLUME_ID_ANNOTATION} with the volume's ARM ID, or add its Elastic SAN to "
        "the managed Elastic SANs in the operator's settings"
    )


def _explain_miss(target: IscsiTarget, index: SanIndex) -> str:
    shown = f"iqn {target.iqn!r}" + (f" at portal {target.portal!r}" if target.portal else "")
    others = index.candidates(target)
    if others:
        portals = ", ".join(sorted(IscsiTarget.of_volume(v).portal or "" for v in others))
        return f"iSCSI target {shown} (the IQN is known, but at portal {portals})"
    managed = ", ".join(sorted(s.name for s in index.managed)) or "none"
    missing = ""
    if index.missing_sans:
        missing = "; not found in Azure: " + ", ".join(sorted(s.arm_id for s in index.missing_sans))
    return f"iSCSI target {shown} (not in the managed Elastic SANs: {managed}{missing})"


__all__ = [
    "ISCSI_DEFAULT_PORT",
    "ISCSI_DRIVER",
    "VOLUME_ID_ANNOTATION",
    "IndexRefreshPending",
    "IscsiTarget",
    "SanIndex",
    "UnmanagedElasticSan",
    "UnmappedVolume",
    "iscsi_target_of",
    "iscsi_volume_attributes",
    "normalise_iqn",
    "normalise_portal",
    "volume_of",
]
