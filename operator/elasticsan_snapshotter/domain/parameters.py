"""StorageClass and VolumeSnapshotClass parameters: one spelling, one parser, for every mode.

The operator reads them from the class objects; the CSI controller gets them in
``CreateVolume`` and ``CreateSnapshot`` (the sidecars strip or add some
``csi.storage.k8s.io/`` keys on the way). Both parse them here, so the same
manifests mean the same in both modes. A known key with a value it cannot have is
a final :class:`InvalidParameter` naming the key; an unknown key is returned in
``unknown`` for the caller to report (the operator posts a Warning Event and goes on,
the CSI controller refuses the call, as CSI has no other way to say it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from elasticsan_snapshotter.domain.errors import InvalidRequest, quote

RESERVED_PREFIX = "csi.storage.k8s.io/"

ELASTIC_SAN = "elasticSanId"
VOLUME_GROUP = "volumeGroup"
DELETE_SNAPSHOTS_WITH_VOLUME = "deleteSnapshotsWithVolume"
EXPORT_BEFORE_VOLUME_DELETE = "exportBeforeVolumeDelete"
FSTYPE = f"{RESERVED_PREFIX}fstype"

FS_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs")
"""File systems csi-driver-iscsi can make and mount (``mkfs.<type>`` on the node)."""
DEFAULT_FS_TYPE = "ext4"

STORAGE_CLASS_KEYS: Mapping[str, str] = {
    ELASTIC_SAN: "ARM ID of the Elastic SAN for new volumes (the CSI controller also takes a managed SAN's name)",
    VOLUME_GROUP: "volume group for new volumes, in that SAN",
    FSTYPE: f"file system of new Filesystem volumes: one of {', '.join(FS_TYPES)} (default {DEFAULT_FS_TYPE})",
    DELETE_SNAPSHOTS_WITH_VOLUME: '"true" lets deleting a released volume delete its snapshots (default "false")',
    EXPORT_BEFORE_VOLUME_DELETE: '"true" exports a released volume\'s snapshots before it is deleted',
}
SNAPSHOT_CLASS_KEYS: Mapping[str, str] = {
    EXPORT_BEFORE_VOLUME_DELETE: '"true" exports this class\'s snapshots before their volume is deleted',
}

RESERVED_KEYS = frozenset(
    f"{RESERVED_PREFIX}{key}"
    for key in (
        # secret references csi-provisioner and csi-snapshotter read
        *(
            f"{role}-secret-{part}"
            for role in (
                "provisioner",
                "controller-publish",
                "node-stage",
                "node-publish",
                "controller-expand",
                "node-expand",
                "snapshotter",
                "snapshotter-list",
                "group-snapshotter",
                "group-snapshotter-get",
            )
            for part in ("name", "namespace")
        ),
        # what the sidecars add with --extra-create-metadata
        "pvc/name",
        "pvc/namespace",
        "pv/name",
        "volumesnapshot/name",
        "volumesnapshot/namespace",
        "volumesnapshotcontent/name",
    )
)
"""``csi.storage.k8s.io/`` keys the Kubernetes sidecars own: accepted and left alone."""


class InvalidParameter(InvalidRequest):
    """A class parameter has a value it cannot have; the class must be fixed (or replaced)."""

    reason = "InvalidParameter"


@dataclass(frozen=True)
class StorageClassParameters:
    elastic_san: str | None = None
    volume_group: str | None = None
    fstype: str = DEFAULT_FS_TYPE
    delete_snapshots_with_volume: bool = False
    export_before_volume_delete: bool = False
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotClassParameters:
    export_before_volume_delete: bool = False
    unknown: tuple[str, ...] = ()


def _flag(values: Mapping[str, str], key: str, what: str) -> bool:
    raw = values.get(key)
    if raw is None:
        return False
    text = raw.strip().lower()
    if text not in ("true", "false"):
        raise InvalidParameter(f'{what} parameter {key} is {quote(raw)}; it must be "true" or "false"')
    return text == "true"


def _text(values: Mapping[str, str], key: str, what: str) -> str | None:
    raw = values.get(key)
    if raw is None:
        return None
    if not raw.strip():
        raise InvalidParameter(f"{what} parameter {key} is empty; set it or leave it out")
    return raw.strip()


def _strings(parameters: Mapping[str, object] | None) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in (parameters or {}).items()}


def _unknown(values: Mapping[str, str], known: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(k for k in values if k not in known and k not in RESERVED_KEYS))


def parse_storage_class(
    parameters: Mapping[str, object] | None, what: str = "StorageClass"
) -> StorageClassParameters:
    values = _strings(parameters)
    fstype = _text(values, FSTYPE, what) or DEFAULT_FS_TYPE
    if fstype.lower() not in FS_TYPES:
        raise InvalidParameter(
            f"{what} parameter {FSTYPE} is {quote(fstype)}; it must be one of {', '.join(FS_TYPES)}"
        )
    return StorageClassParameters(
        elastic_san=_text(values, ELASTIC_SAN, what),
        volume_group=_text(values, VOLUME_GROUP, what),
        fstype=fstype.lower(),
        delete_snapshots_with_volume=_flag(values, DELETE_SNAPSHOTS_WITH_VOLUME, what),
        export_before_volume_delete=_flag(values, EXPORT_BEFORE_VOLUME_DELETE, what),
        unknown=_unknown(values, STORAGE_CLASS_KEYS),
    )


def parse_snapshot_class(
    parameters: Mapping[str, object] | None, what: str = "VolumeSnapshotClass"
) -> SnapshotClassParameters:
    values = _strings(parameters)
    return SnapshotClassParameters(
        export_before_volume_delete=_flag(values, EXPORT_BEFORE_VOLUME_DELETE, what),
        unknown=_unknown(values, SNAPSHOT_CLASS_KEYS),
    )


def unknown_message(unknown: tuple[str, ...], known: Mapping[str, str], what: str) -> str:
    """What to tell a user about keys nobody reads: a typo there changes nothing, silently."""
    keys = ", ".join(quote(k) for k in unknown)
    return f"{what} has unknown parameter(s) {keys}, which are ignored; known: {', '.join(sorted(known))}"


__all__ = [
    "DEFAULT_FS_TYPE",
    "DELETE_SNAPSHOTS_WITH_VOLUME",
    "ELASTIC_SAN",
    "EXPORT_BEFORE_VOLUME_DELETE",
    "FSTYPE",
    "FS_TYPES",
    "RESERVED_KEYS",
    "RESERVED_PREFIX",
    "SNAPSHOT_CLASS_KEYS",
    "STORAGE_CLASS_KEYS",
    "InvalidParameter",
    "SnapshotClassParameters",
    "StorageClassParameters",
    "parse_snapshot_class",
    "parse_storage_class",
    "unknown_message",
]
