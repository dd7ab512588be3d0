"""A made content snapshot-controller bound but never took up is handed back for it to remake.

snapshot-controller v8.6.0 plays its part here as it does when its create met ours before its
watch showed ours: the VolumeSnapshot is bound to the content and stays unready.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fake_kube import FakeKube
from harness import Operator, seeded_azure
from test_content_making import CONTENT, DRIVER, UID, VOLUME, Parts, _ready_made, _snapshot

from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_CONTENT_MADE,
    FIN_CONTENT_BOUND,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.workqueue import Requeue

pytestmark = pytest.mark.unit

TIMEOUT = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _bound(ready: bool = False, **meta: Any) -> Body:
    """The VolumeSnapshot as snapshot-controller leaves it once it has bound the content."""
    vs = _snapshot(**meta)
    vs["status"] = {"boundVolumeSnapshotContentName": CONTENT, "readyToUse": ready}
    return vs


async def _made_and_ready() -> tuple[Parts, Clock]:
    parts = Parts()
    clock = Clock()
    parts.reconciler.clock = clock
    parts.reconciler.take_up_timeout = TIMEOUT
    await parts.snapshot_seen()
    await parts.reconcile_content()
    content = parts.content()
    assert content is not None
    assert content["status"]["readyToUse"] is True
    return parts, clock


def _snapshot_controller_sets(parts: Parts, vs: Body) -> None:
    """snapshot-controller's status write, seen by the API and by the operator's watch."""
    parts.watcher.snapshots.apply("MODIFIED", parts.api.put(VOLUME_SNAPSHOT, copy.deepcopy(vs)))


async def _reconcile(parts: Parts) -> Any:
    stored = parts.content()
    assert stored is not None
    parts.contents.apply("MODIFIED", copy.deepcopy(stored))
    return await parts.reconciler.reconcile(CONTENT)


async def test_a_made_content_bound_but_never_taken_up_is_handed_back_and_remade() -> None:
    parts, clock = await _made_and_ready()
    _snapshot_controller_sets(parts, _bound())
    outcome = await _reconcile(parts)
    assert outcome == Requeue(TIMEOUT)  # snapshot-controller gets its time first
    clock.now += TIMEOUT - 1
    assert await _reconcile(parts) == Requeue(1.0)
    assert parts.api.deleted == []
    clock.now += 1
    assert await _reconcile(parts) is None
    # The content and its Elastic SAN snapshot are gone; the VolumeSnapshot says why.
    assert parts.api.deleted == [(VOLUME_SNAPSHOT_CONTENT.plural, CONTENT)]
    assert await parts.azure.list_snapshots(VOLUME.volume_group) == []
    assert parts.api.count("get", VOLUME_SNAPSHOT.plural) == 1  # asked of the API before anything went
    reasons = [(e["reason"], e["involvedObject"]["name"]) for e in parts.api.events]
    assert ("ContentNotTakenUp", "snap") in reasons
    # The watcher makes no second content for the bound VolumeSnapshot...
    parts.contents.apply("DELETED", _ready_made(CONTENT, UID))
    assert await parts.watcher.reconcile("ns/snap") is None
    assert parts.content() is None
    # ...and the one snapshot-controller makes next is cut as any other, under the same name.
    own = _ready_made(CONTENT, UID)
    del own["metadata"]["annotations"][ANN_CONTENT_MADE]
    del own["status"]
    own["spec"]["source"]["volumeHandle"] = VOLUME.arm_id
    own["spec"]["driver"] = DRIVER
    own["metadata"]["finalizers"] = [FIN_CONTENT_BOUND]
    parts.api.put(VOLUME_SNAPSHOT_CONTENT, own)
    await _reconcile(parts)
    remade = parts.content()
    assert remade is not None
    assert remade["status"]["readyToUse"] is True
    assert len(await parts.azure.list_snapshots(VOLUME.volume_group)) == 1


async def test_the_cut_itself_starts_the_wait_as_no_later_event_queues_a_ready_content() -> None:
    parts = Parts()
    clock = Clock()
    parts.reconciler.clock = clock
    parts.reconciler.take_up_timeout = TIMEOUT
    await parts.snapshot_seen()
    _snapshot_controller_sets(parts, _bound())  # bound before the cut, as in the race
    stored = parts.content()
    assert stored is not None
    parts.contents.apply("MODIFIED", copy.deepcopy(stored))
    assert await parts.reconciler.reconcile(CONTENT) == Requeue(TIMEOUT)  # the cut
    clock.now += TIMEOUT
    # The requeue comes from the store, where the ready body is: no event in between.
    assert await parts.reconciler.reconcile(CONTENT) is None
    assert parts.api.deleted == [(VOLUME_SNAPSHOT_CONTENT.plural, CONTENT)]


async def test_a_snapshot_that_turned_ready_meanwhile_keeps_its_content() -> None:
    # The watch still shows the VolumeSnapshot unready; the API, asked at the timeout, does not.
    parts, clock = await _made_and_ready()
    _snapshot_controller_sets(parts, _bound())
    await _reconcile(parts)
    parts.api.put(VOLUME_SNAPSHOT, _bound(ready=True))
    clock.now += TIMEOUT
    assert await _reconcile(parts) is None
    assert parts.api.deleted == []
    assert len(await parts.azure.list_snapshots(VOLUME.volume_group)) == 1
    assert not [e for e in parts.api.events if e["reason"] == "ContentNotTakenUp"]


async def test_a_ready_snapshot_ends_the_wait_and_an_unbound_one_never_starts_it() -> None:
    parts, clock = await _made_and_ready()
    # Not bound yet: snapshot-controller's queue is behind; looked at again, never handed back.
    assert await _reconcile(parts) == Requeue(TIMEOUT)
    clock.now += 10 * TIMEOUT
    assert await _reconcile(parts) == Requeue(TIMEOUT)
    assert parts.api.count("get", VOLUME_SNAPSHOT.plural) == 0
    _snapshot_controller_sets(parts, _bound(ready=True))
    assert await _reconcile(parts) is None
    assert parts.api.deleted == []


async def test_at_start_a_made_content_waiting_on_snapshot_controller_is_queued() -> None:
    runtime = Operator(FakeKube(), seeded_azure()).runtime
    runtime.on_content(None, _ready_made(CONTENT, UID))
    taken_up = "6d1f0c3e-8a2b-4c5d-9e7f-1a2b3c4d5e6f"
    other = _ready_made(f"snapcontent-{taken_up}", taken_up)
    runtime.on_content(None, other)
    waiting = _bound()
    waiting["metadata"]["name"] = CONTENT  # _ready_made names the VolumeSnapshot as its content
    runtime.on_snapshot(None, waiting)
    ready = _bound(ready=True, uid=taken_up)
    ready["metadata"]["name"] = other["metadata"]["name"]
    ready["status"]["boundVolumeSnapshotContentName"] = other["metadata"]["name"]
    runtime.on_snapshot(None, ready)
    assert runtime.queues["contents"].pending == 0  # ready contents are not queued as listed
    for informer in runtime.informers:
        informer.synced.set()
    await runtime.look_at_made_contents()
    assert runtime.queues["contents"].pending == 1  # only the one still waiting
