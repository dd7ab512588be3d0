"""The objects a schedule makes and reads: its VolumeSnapshots, claims, and what holds snapshots."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from elasticsan_snapshotter.domain import retention
from elasticsan_snapshotter.domain.schedule import jitter, run_name
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import SNAPSHOT_GROUP, VOLUME_SNAPSHOT
from elasticsan_snapshotter.kubernetes.schedule_status import parse_stamp, stamp

EXPORT_DONE = ("Succeeded", "Failed")
RUN_AHEAD = timedelta(seconds=1)
"""A reconcile also runs targets due this soon after it: batched runs are early by at most this,
never late, so each target's run stays inside its jitter window."""


def _meta(body: Body, keys: Iterable[str]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {k: meta[k] for k in keys if k in meta}


def slim_claim(body: Body) -> Body:
    spec = body.get("spec") or {}
    return {
        "metadata": _meta(body, ("name", "namespace", "uid", "labels")),
        "spec": {k: spec[k] for k in ("volumeName", "dataSource", "dataSourceRef") if k in spec},
        "status": {"phase": (body.get("status") or {}).get("phase")},
    }


def slim_snapshot(body: Body) -> Body:
    status = body.get("status") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": _meta(
            body,
            ("name", "namespace", "uid", "labels", "annotations", "ownerReferences", "deletionTimestamp"),
        ),
        "spec": body.get("spec") or {},
        "status": {k: status[k] for k in ("readyToUse", "error", "volumeGroupSnapshotName") if k in status},
    }


def is_ours(body: Body) -> bool:
    """Made by some schedule (which one is in the UID label)."""
    return bool(((body.get("metadata") or {}).get("labels") or {}).get(sspec.LABEL_SCHEDULE_UID))


def owner_key(body: Body) -> str | None:
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(sspec.ANN_SCHEDULE)
    return f"{meta.get('namespace')}/{name}" if name else None


def snapshot_body(schedule: Body, spec: sspec.ScheduleSpec, claim: str, tick: datetime, name: str) -> Body:
    snapshot_spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": claim}}
    if spec.snapshot_class:
        snapshot_spec["volumeSnapshotClassName"] = spec.snapshot_class
    return {
        "apiVersion": VOLUME_SNAPSHOT.api_version,
        "kind": VOLUME_SNAPSHOT.kind,
        "metadata": made_metadata(schedule, spec, tick, name, {sspec.ANN_CLAIM: claim}),
        "spec": snapshot_spec,
    }


def made_metadata(
    schedule: Body, spec: sspec.ScheduleSpec, tick: datetime, name: str, extra: dict[str, str]
) -> dict[str, Any]:
    """Name, the schedule's UID label and its annotations: what marks an object a run made."""
    meta = schedule["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {**spec.labels, sspec.LABEL_SCHEDULE_UID: meta["uid"]},
        "annotations": {
            **spec.annotations,
            sspec.ANN_SCHEDULE: meta["name"],
            sspec.ANN_SCHEDULED_TIME: stamp(tick),
            **extra,
        },
    }


def planned(
    plan: dict[str, tuple[str, datetime]], schedule: Body, target: str, tick: datetime, window: timedelta
) -> tuple[str, datetime]:
    """A target's run name and due time for the tick, computed once and kept in ``plan``."""
    if target not in plan:
        meta = schedule["metadata"]
        uid = str(meta["uid"])
        plan[target] = (run_name(meta["name"], target, tick, uid), tick + jitter(uid, target, window))
    return plan[target]


def holders(namespace: str, claims: Iterable[Body], exports: Iterable[Body]) -> retention.Holders:
    """Snapshots that a claim not yet Bound restores from, or that an unfinished export reads."""
    restoring = set()
    for claim in claims:
        meta = claim.get("metadata") or {}
        if meta.get("namespace") != namespace or (claim.get("status") or {}).get("phase") == "Bound":
            continue
        for key in ("dataSource", "dataSourceRef"):
            source = (claim.get("spec") or {}).get(key) or {}
            if source.get("kind") == "VolumeSnapshot" and source.get("apiGroup") == SNAPSHOT_GROUP:
                restoring.add(str(source.get("name")))
    exporting = set()
    for export in exports:
        meta = export.get("metadata") or {}
        if meta.get("namespace") != namespace or (export.get("status") or {}).get("phase") in EXPORT_DONE:
            continue
        name = ((export.get("spec") or {}).get("source") or {}).get("volumeSnapshotName")
        if name:
            exporting.add(str(name))
    return retention.Holders(pending_restores=frozenset(restoring), running_exports=frozenset(exporting))


def state_of(vs: Body) -> str:
    status = vs.get("status") or {}
    if status.get("readyToUse"):
        return retention.READY
    if status.get("error"):
        return retention.FAILED
    return retention.IN_PROGRESS


def group_of(vs: Body) -> str | None:
    for owner in (vs.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "VolumeGroupSnapshot":
            return str(owner.get("name"))
    name = (vs.get("status") or {}).get("volumeGroupSnapshotName")
    return str(name) if name else None


def copies_by_claim(
    snapshots: Iterable[Body], schedule_uid: str, held: retention.Holders
) -> dict[str, list[tuple[retention.Copy, Body]]]:
    """This schedule's snapshots (by its UID label, none being deleted), per claim, as retention copies."""
    out: dict[str, list[tuple[retention.Copy, Body]]] = {}
    for vs in snapshots:
        meta = vs.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(sspec.LABEL_SCHEDULE_UID) != schedule_uid or meta.get("deletionTimestamp"):
            continue
        annotations = meta.get("annotations") or {}
        when = parse_stamp(annotations.get(sspec.ANN_SCHEDULED_TIME))
        claim = ((vs.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
        if when is None or not claim:
            continue
        name = str(meta["name"])
        in_use = retention.in_use_reason(
            name, keep_label=labels.get(sspec.LABEL_KEEP), group=group_of(vs), holders=held
        )
        out.setdefault(str(claim), []).append((retention.Copy(name, when, state_of(vs), in_use), vs))
    return out


__all__ = [
    "RUN_AHEAD",
    "copies_by_claim",
    "group_of",
    "holders",
    "is_ours",
    "made_metadata",
    "owner_key",
    "planned",
    "slim_claim",
    "slim_snapshot",
    "snapshot_body",
    "state_of",
]
