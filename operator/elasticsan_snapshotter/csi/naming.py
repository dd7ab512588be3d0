"""From CSI names and parameters to Azure names and places.

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
from collections.abc import Mapping

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.names import SNAPSHOT_NAME, VOLUME_NAME, NameRule

_HASH_CHARS = 10
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")

RESERVED_PARAMETER_PREFIX = "csi.storage.k8s.io/"
"""Keys the Kubernetes sidecars add (PVC/snapshot metadata, secret references); never ours to judge."""

PARAM_ELASTIC_SAN = "elasticSan"
PARAM_VOLUME_GROUP = "volumeGroup"
VOLUME_PARAMETERS = frozenset({PARAM_ELASTIC_SAN, PARAM_VOLUME_GROUP})
SNAPSHOT_PARAMETERS: frozenset[str] = frozenset()


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


def check_parameters(parameters: Mapping[str, str], known: frozenset[str], what: str) -> dict[str, str]:
    """Our parameters from ``parameters``; an unknown key is refused so a typo never goes unnoticed."""
    ours = {k: v for k, v in parameters.items() if not k.startswith(RESERVED_PARAMETER_PREFIX)}
    unknown = sorted(set(ours) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise InvalidRequest(f"unknown {what} parameter(s) {', '.join(unknown)}; supported: {allowed}")
    return ours


__all__ = [
    "PARAM_ELASTIC_SAN",
    "PARAM_VOLUME_GROUP",
    "RESERVED_PARAMETER_PREFIX",
    "SNAPSHOT_PARAMETERS",
    "VOLUME_PARAMETERS",
    "azure_name",
    "check_parameters",
    "snapshot_name",
    "volume_name",
]
