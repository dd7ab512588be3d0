"""Mode Group: one VolumeGroupSnapshot per run over the schedule's claim selector, and its retention.

The group API selects member claims by label only, so a schedule in mode Group needs
``source.selector``; ``source.claimNames`` is refused. Retention works on whole groups:
deleting a group deletes its member VolumeSnapshots (the snapshot-controller's job).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from elasticsan_snapshotter.domain import retention
from elasticsan_snapshotter.domain.errors import AlreadyExists, InvalidRequest
from elasticsan_snapshotter.domain.schedule import SKIP, WAIT, judge
from elasticsan_snapshotter.kubernetes import schedule_spec as sspec
from elasticsan_snapshotter.kubernetes import schedule_status as sstatus
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import VOLUME_GROUP_SNAPSHOT
from elasticsan_snapshotter.kubernetes.schedule_objects import (
    RUN_AHEAD,
    group_of,
    holders,
    made_metadata,
    planned,
    state_of,
)
from elasticsan_snapshotter.kubernetes.schedule_retention import ScheduledRetention
from elasticsan_snapshotter.kubernetes.stores import Store

if TYPE_CHECKING:
    from elasticsan_snapshotter.kubernetes.scheduler import ScheduleReconciler

logger = logging.getLogger(__name__)

GROUP_TARGET = "group"
"""The one target of a schedule in mode Group: its run name and jitter are keyed on this."""


def check(spec: sspec.ScheduleSpec) -> None:
    """Refuse what a VolumeGroupSnapshot cannot express."""
    if spec.mode == sspec.GROUP and spec.selector is None:
        raise InvalidRequest(
            "mode Group needs spec.source.selector: a VolumeGroupSnapshot selects its member claims "
            "by label only, so spec.source.claimNames cannot be used; label the claims and select them"
        )


def group_body(schedule: Body, spec: sspec.ScheduleSpec, tick: datetime, name: str) -> Body:
    assert spec.selector is not None
    group_spec: dict[str, Any] = {"source": {"selector": dict(spec.selector)}}
    if spec.group_snapshot_class:
        group_spec["volumeGroupSnapshotClassName"] = spec.group_snapshot_class
    return {
        "apiVersion": VOLUME_GROUP_SNAPSHOT.api_version,
        "kind": VOLUME_GROUP_SNAPSHOT.kind,
        "metadata": made_metadata(schedule, spec, tick, name, {}),
        "spec": group_spec,
    }


async def group_tick(
    rec: ScheduleReconciler,
    body: Body,
    spec: sspec.ScheduleSpec,
    targets: list[str],
    tick: datetime,
    now: datetime,
    plan: dict[str, tuple[str, datetime]],
    window: timedelta,
    out: sstatus.Outcome,
    wake: list[datetime],
) -> bool:
    """Mode Group: one VolumeGroupSnapshot for the tick, over every selected claim at once."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    name, due = planned(plan, body, GROUP_TARGET, tick, window)
    if rec.groups.get(f"{namespace}/{name}") is not None:
        return False
    verdict = judge(due, now, spec.deadline, ahead=RUN_AHEAD)
    if verdict.action == WAIT:
        wake.append(verdict.due)
        return True
    if verdict.action == SKIP:
        rec.skip(out, tick, "MissedStartingDeadline", f"run of {sstatus.stamp(tick)} {verdict.reason}")
        return False
    unbound = [
        c
        for c in targets
        if ((rec.claims.get(f"{namespace}/{c}") or {}).get("status") or {}).get("phase") != "Bound"
    ]
    if not targets or unbound:
        # A group over a claim with no volume would fail as a whole: skip the tick instead.
        why = f"claim(s) not Bound: {', '.join(unbound[:5])}" if unbound else "no claim matches the selector"
        rec.skip(out, tick, "ClaimNotBound", f"run of {sstatus.stamp(tick)} skipped: {why}")
        return False
    for claim in targets:
        claim_body = rec.claims.get(f"{namespace}/{claim}")
        assert claim_body is not None
        await rec.count_azure(namespace, claim, claim_body)
    try:
        created = await rec.api.create(VOLUME_GROUP_SNAPSHOT, group_body(body, spec, tick, name), namespace)
    except AlreadyExists:
        return False  # made before a restart or by a concurrent reconcile: the tick is covered
    rec.groups.apply("ADDED", created)
    out.running = True
    logger.info(
        "schedule %s/%s: created VolumeGroupSnapshot %s over %d claim(s)",
        namespace,
        meta["name"],
        name,
        len(targets),
    )
    return False


def members_by_group(members: Iterable[Body], namespace: str) -> dict[str, list[Body]]:
    """Member VolumeSnapshots of the namespace, by the name of their VolumeGroupSnapshot."""
    out: dict[str, list[Body]] = {}
    for vs in members:
        group = group_of(vs)
        if group is not None and (vs.get("metadata") or {}).get("namespace") == namespace:
            out.setdefault(group, []).append(vs)
    return out


def our_groups(groups: Iterable[Body], schedule_uid: str) -> list[tuple[Body, datetime]]:
    """This schedule's VolumeGroupSnapshots (by its UID label, none being deleted), with their ticks."""
    out = []
    for group in groups:
        meta = group.get("metadata") or {}
        if (meta.get("labels") or {}).get(sspec.LABEL_SCHEDULE_UID) != schedule_uid or meta.get(
            "deletionTimestamp"
        ):
            continue
        when = sstatus.parse_stamp((meta.get("annotations") or {}).get(sspec.ANN_SCHEDULED_TIME))
        if when is not None:
            out.append((group, when))
    return out


def group_copies(
    groups: Iterable[Body],
    schedule_uid: str,
    members: Mapping[str, list[Body]],
    held: retention.Holders,
) -> list[tuple[retention.Copy, Body]]:
    """This schedule's groups as retention copies; a group whose member is in use is held."""
    out = []
    for group, when in our_groups(groups, schedule_uid):
        meta = group["metadata"]
        name = str(meta["name"])
        in_use = retention.group_in_use_reason(
            keep_label=(meta.get("labels") or {}).get(sspec.LABEL_KEEP),
            members=[
                (str(vs["metadata"]["name"]), (vs["metadata"].get("labels") or {}).get(sspec.LABEL_KEEP))
                for vs in members.get(name, ())
            ],
            holders=held,
        )
        out.append((retention.Copy(name, when, state_of(group), in_use), group))
    return out


def member_copies(
    groups: Iterable[Body], schedule_uid: str, members: Mapping[str, list[Body]]
) -> dict[str, list[tuple[retention.Copy, Body]]]:
    """Per claim, the member snapshots of this schedule's groups, at their group's tick.

    A member counts as ready once it and its group are: what a scheduled export copies.
    """
    out: dict[str, list[tuple[retention.Copy, Body]]] = {}
    for group, when in our_groups(groups, schedule_uid):
        group_state = state_of(group)
        for vs in members.get(str(group["metadata"]["name"]), ()):
            claim = ((vs.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
            if not claim or (vs.get("metadata") or {}).get("deletionTimestamp"):
                continue
            state = state_of(vs)
            if state == retention.READY and group_state != retention.READY:
                state = group_state
            copy = retention.Copy(str(vs["metadata"]["name"]), when, state)
            out.setdefault(str(claim), []).append((copy, vs))
    return out


class GroupRetention(ScheduledRetention):
    """Retention of a schedule's VolumeGroupSnapshots; every target claim shares the groups' summary."""

    resource = VOLUME_GROUP_SNAPSHOT

    def __init__(
        self,
        reconciler: ScheduleReconciler,
        body: Body,
        spec: sspec.ScheduleSpec,
        out: sstatus.Outcome,
        targets: list[str],
    ) -> None:
        super().__init__(reconciler, body, spec, out)
        self.targets = targets

    @property
    def store(self) -> Store:
        return self.rec.groups

    async def run(self) -> None:
        now = self.rec.clock()
        namespace = str(self.body["metadata"]["namespace"])
        held = holders(namespace, self.rec.claims, self.rec.exports)
        members = members_by_group(self.rec.members, namespace)
        copies = group_copies(self.rec.groups, str(self.body["metadata"]["uid"]), members, held)
        await self._observe(copies)
        plan = retention.plan([c for c, _ in copies], self.spec.policy, now=now, zone=self.spec.zone)
        self.out.blocked.extend(plan.blocked)
        kept = []
        for copy, group in copies:
            if copy.name in plan.reasons:
                await self._delete(group, plan.reasons[copy.name], now)
            else:
                kept.append((copy, group))
        for claim in self.targets:
            self._summarise(claim, kept)


__all__ = [
    "GROUP_TARGET",
    "GroupRetention",
    "check",
    "group_body",
    "group_copies",
    "group_tick",
    "member_copies",
    "members_by_group",
    "our_groups",
]
