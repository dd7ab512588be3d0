"""Names of Azure resources: the ones we derive and the rules user-supplied ones must follow.

Derived names are deterministic, so a retry after a timeout or a crash finds the
resource the first attempt made instead of making a second one:

* Elastic SAN snapshot: ``snapshot-<VolumeSnapshot UID>`` (csi-snapshotter's default prefix),
* Elastic SAN volume: ``pvc-<PVC UID>`` (csi-provisioner's default prefix),
* managed-disk snapshot of an export: from the export's namespace and name, or its UID.

The rules are those the Elastic SAN and Compute REST APIs enforce on path names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from elasticsan_snapshotter.domain.errors import InvalidRequest

SNAPSHOT_PREFIX = "snapshot-"
VOLUME_PREFIX = "pvc-"
EXPORT_PREFIX = "esexport-"


@dataclass(frozen=True)
class NameRule:
    """A length range and a pattern, with the words to explain them to a user."""

    what: str
    min_length: int
    max_length: int
    pattern: re.Pattern[str]
    explanation: str

    def check(self, name: str) -> str:
        if not isinstance(name, str):
            raise InvalidRequest(f"the {self.what} name must be a string, not {type(name).__name__}")
        if not self.min_length <= len(name) <= self.max_length or not self.pattern.fullmatch(name):
            raise InvalidRequest(
                f"{name!r} is not a valid {self.what} name: it must be {self.min_length}-{self.max_length} "
                f"characters, {self.explanation}"
            )
        return name

    def is_valid(self, name: str) -> bool:
        try:
            self.check(name)
        except InvalidRequest:
            return False
        return True


_ALNUM_WORDS = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")

ELASTIC_SAN_NAME = NameRule(
    "Elastic SAN",
    3,
    24,
    _ALNUM_WORDS,
    "letters and digits, with single '-' or '_' between them",
)
VOLUME_GROUP_NAME = NameRule(
    "volume group",
    3,
    63,
    _ALNUM_WORDS,
    "letters and digits, with single '-' or '_' between them",
)
VOLUME_NAME = NameRule(
    "Elastic SAN volume",
    3,
    63,
    re.compile(r"[a-z0-9]+(?:-[a-zA-Z0-9]+)*"),
    "starting with lower-case letters or digits, with single '-' between parts (no '_' or '.')",
)
SNAPSHOT_NAME = NameRule(
    "Elastic SAN snapshot",
    1,
    80,
    re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*"),
    "lower-case letters and digits, with single '.', '_' or '-' between them",
)
DISK_SNAPSHOT_NAME = NameRule(
    "managed-disk snapshot",
    1,
    80,
    re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"),
    "letters, digits, '_' and '-', starting with a letter or digit and not ending in '-'",
)


def validate_elastic_san_name(name: str) -> str:
    return ELASTIC_SAN_NAME.check(name)


def validate_volume_group_name(name: str) -> str:
    return VOLUME_GROUP_NAME.check(name)


def validate_volume_name(name: str) -> str:
    return VOLUME_NAME.check(name)


def validate_snapshot_name(name: str) -> str:
    return SNAPSHOT_NAME.check(name)


def validate_disk_snapshot_name(name: str) -> str:
    return DISK_SNAPSHOT_NAME.check(name)


# Kubernetes UIDs are RFC 4122 UUIDs in practice; accept any hex-and-dash token of sane length.
_UID = re.compile(r"[0-9a-f]+(?:-[0-9a-f]+)*")
_UID_MAX = 64


def _clean_uid(uid: str, what: str) -> str:
    value = uid.strip().lower() if isinstance(uid, str) else ""
    if not value or len(value) > _UID_MAX or not _UID.fullmatch(value):
        raise InvalidRequest(
            f"{uid!r} is not a usable {what} UID: expected a Kubernetes UID such as "
            "'3f2504e0-4f89-11d3-9a0c-0305e82c3301'"
        )
    return value


def snapshot_name(volume_snapshot_uid: str) -> str:
    """The Elastic SAN snapshot name for a VolumeSnapshot: ``snapshot-<uid>``."""
    return SNAPSHOT_NAME.check(SNAPSHOT_PREFIX + _clean_uid(volume_snapshot_uid, "VolumeSnapshot"))


def volume_name(pvc_uid: str) -> str:
    """The Elastic SAN volume name for a PersistentVolumeClaim: ``pvc-<uid>``."""
    return VOLUME_NAME.check(VOLUME_PREFIX + _clean_uid(pvc_uid, "PersistentVolumeClaim"))


def export_disk_snapshot_name_from_uid(export_uid: str) -> str:
    """The managed-disk snapshot name for an export, unique across clusters: ``esexport-<uid>``."""
    return DISK_SNAPSHOT_NAME.check(EXPORT_PREFIX + _clean_uid(export_uid, "export"))


_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_HASH_CHARS = 10


def export_disk_snapshot_name(namespace: str, name: str) -> str:
    """The managed-disk snapshot name for an export, readable as ``esexport-<namespace>_<name>``.

    A namespace never holds ``_``, so one ``_`` separates the two unambiguously. When the
    object name holds a ``.`` (not allowed in disk snapshot names) or the result would be too
    long, the name is shortened and ends in ``__<hash of namespace/name>``; a readable name
    never holds ``__``, so the two forms never collide.
    """
    if not isinstance(namespace, str) or not _DNS_LABEL.fullmatch(namespace):
        raise InvalidRequest(f"{namespace!r} is not a Kubernetes namespace name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.fullmatch(name):
        raise InvalidRequest(f"{name!r} is not a Kubernetes object name")
    readable = f"{EXPORT_PREFIX}{namespace}_{name}"
    if "." not in name and len(readable) <= DISK_SNAPSHOT_NAME.max_length:
        return DISK_SNAPSHOT_NAME.check(readable)
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:_HASH_CHARS]
    room = DISK_SNAPSHOT_NAME.max_length - len(digest) - 2
    stem = f"{EXPORT_PREFIX}{namespace}_{name.replace('.', '-')}"[:room].rstrip("-_")
    return DISK_SNAPSHOT_NAME.check(f"{stem}__{digest}")


__all__ = [
    "DISK_SNAPSHOT_NAME",
    "ELASTIC_SAN_NAME",
    "EXPORT_PREFIX",
    "SNAPSHOT_NAME",
    "SNAPSHOT_PREFIX",
    "VOLUME_GROUP_NAME",
    "VOLUME_NAME",
    "VOLUME_PREFIX",
    "NameRule",
    "export_disk_snapshot_name",
    "export_disk_snapshot_name_from_uid",
    "snapshot_name",
    "validate_disk_snapshot_name",
    "validate_elastic_san_name",
    "validate_snapshot_name",
    "validate_volume_group_name",
    "validate_volume_name",
    "volume_name",
]
