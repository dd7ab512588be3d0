"""The limits arithmetic applied to the schedules and snapshots the operator watches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from elasticsan_snapshotter.domain import limits
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.stores import Store

MAX_CLAIMS_IN_MESSAGE = 3


_CACHE: dict[tuple[str, limits.VolumeLimits], limits.Demand] = {}
_CACHE_SIZE = 4096


def demand_of(
    body: Body, spec: sspec.ScheduleSpec, volume_limits: limits.VolumeLimits, now: datetime
) -> limits.Demand:
    """The schedule's demand, computed once per distinct spec (cron schedules sample many ticks)."""
    meta = body["metadata"]
    cache_key = (spec_key(body), volume_limits)
    found = _CACHE.get(cache_key)
    if found is None:
        found = _demand(f"{meta.get('namespace')}/{meta.get('name')}", spec, volume_limits, now)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[cache_key] = found
    return found


def spec_key(body: Body) -> str:
    """The spec as a canonical string: equal specs share cached arithmetic."""
    return json.dumps(body.get("spec") or {}, sort_keys=True)


def _demand(
    key: str, spec: sspec.ScheduleSpec, volume_limits: limits.VolumeLimits, now: datetime
) -> limits.Demand:
    return limits.demand(
        key,
        spec.schedule,
        spec.zone,
        spec.policy,
        exports=spec.export is not None,
        limits=volume_limits,
        start=now,
    )


def pressure(
    body: Body,
    demand: limits.Demand,
    targets: list[str],
    schedules: Store,
    snapshots: Store,
    groups: Store,
    claims: Store,
    azure_counts: Mapping[str, int],
    *,
    minimum: timedelta,
    volume_limits: limits.VolumeLimits,
    now: datetime,
) -> str:
    """Other schedules on the same claims, and snapshots others took, against the volume limits."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    others: list[tuple[set[str], limits.Demand]] = []
    for other in schedules:
        other_meta = other["metadata"]
        if other_meta.get("namespace") != namespace or other_meta.get("uid") == meta.get("uid"):
            continue
        try:
            other_spec = sspec.parse(other, minimum=minimum)
        except InvalidRequest:
            continue
        if other_spec.suspend:
            continue
        chosen = set(sspec.targets(other_spec, namespace, list(claims)))
        others.append((chosen, demand_of(other, other_spec, volume_limits, now)))
    scheduled: dict[str, int] = {}
    for vs in snapshots:
        if vs["metadata"].get("namespace") == namespace:
            claim = str(((vs.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName"))
            scheduled[claim] = scheduled.get(claim, 0) + 1
    for group in groups:
        # A group holds one snapshot of each claim its selector matches (mode Group).
        if group["metadata"].get("namespace") != namespace:
            continue
        selector = ((group.get("spec") or {}).get("source") or {}).get("selector") or {}
        for claim_body in claims:
            claim_meta = claim_body["metadata"]
            if claim_meta.get("namespace") == namespace and sspec.selects(
                selector, claim_meta.get("labels") or {}
            ):
                scheduled[str(claim_meta["name"])] = scheduled.get(str(claim_meta["name"]), 0) + 1
    messages = []
    for claim in targets:
        sharing = [demand, *(d for chosen, d in others if claim in chosen)]
        # Azure's count less what schedules made (their steady counts cover those).
        taken = max(0, azure_counts.get(f"{namespace}/{claim}", 0) - scheduled.get(claim, 0))
        found = limits.shared(sharing, taken, volume_limits)
        if found.message:
            messages.append(f"claim {claim}: {found.message}")
    more = len(messages) - MAX_CLAIMS_IN_MESSAGE
    return "; ".join(messages[:MAX_CLAIMS_IN_MESSAGE]) + (f"; and {more} more claim(s)" if more > 0 else "")


__all__ = ["demand_of", "pressure"]
