"""The ``volumesnapshot-being-created`` annotation: set once per create, gone on every path.

A content must never stay ready (or deleted) with the annotation: the deletion path
waits for it, so a leftover one kept the VolumeSnapshot's finalizer and the Elastic SAN
snapshot for good.
"""

from __future__ import annotations

import pytest
from fake_kube import Crash, FakeKube, Request
from harness import (
    GROUP,
    Operator,
    delete_snapshot_as_snapshot_controller,
    dynamic_content,
    seeded_azure,
    volume_snapshot,
)

from elasticsan_snapshotter.domain import names
from elasticsan_snapshotter.kubernetes.resources import ANN_BEING_CREATED, VOLUME_SNAPSHOT_CONTENT

VOLUME = GROUP.volume("vol1")


def annotations(kube: FakeKube, name: str) -> dict[str, str]:
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    return dict(body["metadata"].get("annotations") or {})


def annotation_writes(kube: FakeKube, name: str) -> int:
    return sum(
        1
        for r in kube.requests
        if r.method == "PATCH"
        and r.plural == VOLUME_SNAPSHOT_CONTENT.plural
        and r.name == name
        and not r.subresource
        and ANN_BEING_CREATED in str(r.body)
    )


async def test_polls_of_an_unready_snapshot_set_the_annotation_once_and_keep_it() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    content = dynamic_content(kube, vs, VOLUME)
    name = content["metadata"]["name"]
    # An earlier create is still running in Azure: every look finds it not yet done.
    azure.add_snapshot(
        GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"])), VOLUME, provisioning_state="Creating"
    )
    operator = Operator(kube, azure)
    for _ in range(4):
        operator.deliver_all()
        assert await operator.reconcile("contents", name) is not None
    assert annotation_writes(kube, name) == 1
    assert ANN_BEING_CREATED in annotations(kube, name)

    azure.set_snapshot_state(GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"])), "Succeeded")
    await operator.settle()
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    assert body["status"]["readyToUse"] is True
    assert ANN_BEING_CREATED not in annotations(kube, name)
    assert annotation_writes(kube, name) == 2


def _removes_annotation(request: Request) -> bool:
    return (
        request.method == "PATCH"
        and request.plural == VOLUME_SNAPSHOT_CONTENT.plural
        and not request.subresource
        and request.body == {"metadata": {"annotations": {ANN_BEING_CREATED: None}}}
    )


async def test_a_crash_between_ready_and_annotation_removal_is_repaired_at_start_up() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    name = dynamic_content(kube, vs, VOLUME)["metadata"]["name"]
    operator = Operator(kube, azure)
    kube.crash_when = _removes_annotation
    operator.deliver_all()
    with pytest.raises(Crash):
        await operator.reconcile("contents", name)
    kube.crash_when = None
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    assert body["status"]["readyToUse"] is True
    assert ANN_BEING_CREATED in annotations(kube, name)

    operator.restart()
    await operator.settle()
    assert ANN_BEING_CREATED not in annotations(kube, name)

    delete_snapshot_as_snapshot_controller(kube, name)
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    assert await azure.list_snapshots(GROUP) == []


@pytest.mark.parametrize("create_reached_azure", [True, False])
async def test_a_snapshot_deleted_while_its_create_was_in_flight_and_the_operator_down(
    create_reached_azure: bool,
) -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    # The previous operator set the annotation, maybe reached Azure, and died before any status.
    name = dynamic_content(kube, vs, VOLUME, annotations={ANN_BEING_CREATED: "yes"})["metadata"]["name"]
    if create_reached_azure:
        await azure.create_snapshot(GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"])), VOLUME)
    delete_snapshot_as_snapshot_controller(kube, name)

    operator = Operator(kube, azure)
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    assert await azure.list_snapshots(GROUP) == []


async def test_a_deleted_content_waits_while_its_azure_create_is_still_running() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    snapshot = GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"]))
    name = dynamic_content(kube, vs, VOLUME, annotations={ANN_BEING_CREATED: "yes"})["metadata"]["name"]
    azure.add_snapshot(snapshot, VOLUME, provisioning_state="Creating")
    delete_snapshot_as_snapshot_controller(kube, name)

    operator = Operator(kube, azure)
    await operator.settle(rounds=3)
    assert (
        kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is not None
    )  # deleting a running create would leak it
    assert azure.call_count("delete_snapshot") == 0

    azure.set_snapshot_state(snapshot, "Succeeded")
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    assert await azure.list_snapshots(GROUP) == []
