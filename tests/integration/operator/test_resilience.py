"""Crashes and a misbehaving Azure: everything converges, nothing is duplicated, no false errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import (
    Kube,
    StartOperator,
    create_in_flight,
    snapshots_of,
    static_claim,
    unique_name,
    wait_for,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess

BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
COUNT = 5


@pytest.fixture
def slow_azure(emulator: EmulatorProcess) -> Iterator[None]:
    emulator.admin.update_settings(lroSeconds=3)
    try:
        yield
    finally:
        emulator.admin.update_settings(lroSeconds=0)
        emulator.admin.clear_faults()


def snapshot_many(kube: Kube, namespace: str, volume: Any) -> list[str]:
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, "Delete")
    static_claim(kube, namespace, volume, storage_class)
    names = [f"snap-{i}" for i in range(COUNT)]
    for name in names:
        kube.create_snapshot(namespace, name, "data", snapshot_class=snapshot_class)
    return names


def contents_of(kube: Kube, namespace: str, names: list[str]) -> list[dict[str, Any]]:
    found = []
    for name in names:
        vs = kube.snapshot(namespace, name) or {}
        content_name = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = kube.content(content_name) if content_name else None
        if content:
            found.append(content)
    return found


def assert_one_azure_snapshot_each(
    esan: ElasticSanMgmtClient, kube: Kube, namespace: str, volume: Any, names: list[str]
) -> None:
    uids = {kube.snapshot(namespace, n)["metadata"]["uid"] for n in names}  # type: ignore[index]
    in_azure = [s.name for s in snapshots_of(esan, volume.name)]
    assert sorted(in_azure) == sorted(f"snapshot-{uid}" for uid in uids)


def test_operator_killed_while_creating(
    slow_azure: None,
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    first = start_operator()
    names = snapshot_many(kube, namespace, volume)

    def creating() -> bool:
        return create_in_flight(
            contents_of(kube, namespace, names), lambda: bool(snapshots_of(esan, volume.name))
        )

    wait_for("a snapshot create in flight", creating, interval=0.1)
    first.kill()

    second = start_operator()
    for name in names:
        kube.wait_snapshot_ready(namespace, name, timeout=120)
    assert_one_azure_snapshot_each(esan, kube, namespace, volume, names)
    for content in contents_of(kube, namespace, names):
        assert BEING_CREATED not in (content["metadata"].get("annotations") or {})
    second.stop()


def test_throttling_and_server_errors_converge_without_errors(
    slow_azure: None,
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    emulator.admin.update_settings(lroSeconds=0)
    operator = start_operator()
    emulator.admin.set_faults("put:volumeSnapshots:429:0.6:12,get:*:500:0.2:20,get:operations:503:0.3:10")
    names = snapshot_many(kube, namespace, volume)
    errors: list[Any] = []

    def all_ready() -> bool:
        contents = contents_of(kube, namespace, names)
        errors.extend(c["status"]["error"] for c in contents if (c.get("status") or {}).get("error"))
        return len(contents) == COUNT and all((c.get("status") or {}).get("readyToUse") for c in contents)

    wait_for("every snapshot to be ready despite the faults", all_ready, timeout=180, interval=0.5)
    assert errors == [], "transient faults must never surface as status.error"
    assert_one_azure_snapshot_each(esan, kube, namespace, volume, names)
    throttled = [
        ln
        for ln in operator.metrics().splitlines()
        if ln.startswith("elasticsan_snapshotter_azure_throttled_responses_total")
    ]
    assert throttled
    assert float(throttled[0].split()[-1]) > 0
    operator.stop()
