"""From CSI names to Azure names.

CSI names are up to 128 bytes of anything; Elastic SAN names are short and strict.
A name that is already valid is used as it is, so ``snapshot-<uid>`` from
csi-snapshotter and ``pvc-<uid>`` from csi-provisioner stay readable. Any other
name is folded to the allowed alphabet, cut to length and suffixed with a hash of
the original, so the mapping stays deterministic (idempotency by name) and two
different CSI names do not meet on one Azure name.
"""

from __future__ import annotations

import hashlib
import re

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.names import SNAPSHOT_NAME, VOLUME_NAME, NameRule

_HASH_CHARS = 10
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def azure_name(csi_name: str, rule: NameRule) -> str:
    """The Azure resource name for a CSI ``name``; the same input always gives the same output."""
    if not csi_name:
        raise InvalidRequest("name is required")
    if rule.is_valid(csi_name):
        return csi_name
    digest = hashlib.sha256(csi_name.encode()).hexdigest()[:_HASH_CHARS]
    stem = _NOT_ALLOWED.sub("-", csi_name.lower()).strip("-")
    stem = stem[: rule.max_length - _HASH_CHARS - 1].rstrip("-")
    return rule.check(f"{stem or 'csi'}-{digest}")


def volume_name(csi_name: str) -> str:
    return azure_name(csi_name, VOLUME_NAME)


def snapshot_name(csi_name: str) -> str:
    return azure_name(csi_name, SNAPSHOT_NAME)


__all__ = [
    "azure_name",
    "snapshot_name",
    "volume_name",
]
