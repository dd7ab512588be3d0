"""The ``spec`` of an ElasticSanSnapshotExport, checked again after the CRD schema, and its Azure tags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from elasticsan_snapshotter.domain import names
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.identity import SnapshotId
from elasticsan_snapshotter.kubernetes.api import Body

RETAIN = "Retain"
DELETE = "Delete"
DEFAULT_SKU = "Standard_LRS"
SKUS = ("Standard_LRS", "Premium_LRS", "Standard_ZRS")

# Azure tag names may not contain '/', so these carry no DNS prefix.
TAG_EXPORT = "elasticsan-snapshotter-export"
TAG_SOURCE = "elasticsan-snapshotter-source"
TAG_SOURCE_SNAPSHOT = "elasticsan-snapshotter-source-snapshot"


@dataclass(frozen=True)
class ExportSpec:
    """``spec`` of an export, checked again here (the CRD schema refuses most mistakes first)."""

    volume_snapshot: str | None = None
    content: str | None = None
    handle: str | None = None
    target_name: str | None = None
    resource_group: str | None = None
    location: str | None = None
    sku: str = DEFAULT_SKU
    incremental: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    deletion_policy: str = RETAIN

    def describe_source(self) -> str:
        if self.volume_snapshot:
            return f"VolumeSnapshot {self.volume_snapshot}"
        if self.content:
            return f"VolumeSnapshotContent {self.content}"
        return f"snapshot {self.handle}"


def parse_spec(body: Body) -> ExportSpec:
    spec = body.get("spec") or {}
    source = spec.get("source") or {}
    target = spec.get("target") or {}
    given = {k: source.get(k) for k in ("volumeSnapshotName", "volumeSnapshotContentName", "snapshotHandle")}
    chosen = [k for k, v in given.items() if v]
    if len(chosen) != 1:
        raise InvalidRequest(
            "spec.source must name exactly one of volumeSnapshotName, volumeSnapshotContentName "
            f"or snapshotHandle, not {len(chosen)}"
        )
    sku = str(target.get("sku") or DEFAULT_SKU)
    if sku not in SKUS:
        raise InvalidRequest(f"spec.target.sku {sku!r} is not one of {', '.join(SKUS)}")
    policy = str(spec.get("deletionPolicy") or RETAIN)
    if policy not in (RETAIN, DELETE):
        raise InvalidRequest(f"spec.deletionPolicy {policy!r} is not Retain or Delete")
    name = target.get("name")
    if name:
        names.validate_disk_snapshot_name(str(name))
    return ExportSpec(
        volume_snapshot=given["volumeSnapshotName"],
        content=given["volumeSnapshotContentName"],
        handle=given["snapshotHandle"],
        target_name=str(name) if name else None,
        resource_group=target.get("resourceGroup") or None,
        location=target.get("location") or None,
        sku=sku,
        incremental=bool(target.get("incremental", False)),
        tags={str(k): str(v) for k, v in (target.get("tags") or {}).items()},
        deletion_policy=policy,
    )


def export_tags(namespace: str, name: str, spec: ExportSpec, source: SnapshotId) -> dict[str, str]:
    """Tags naming the export and its source; the user's own tags win."""
    tags = {
        TAG_EXPORT: f"{namespace}/{name}"[:256],
        TAG_SOURCE: spec.describe_source()[:256],
        TAG_SOURCE_SNAPSHOT: source.name[:256],
    }
    tags.update(spec.tags)
    return tags


__all__ = ["DEFAULT_SKU", "DELETE", "RETAIN", "SKUS", "ExportSpec", "export_tags", "parse_spec"]
