"""The operator's informer against the real API server: list, watch, resume, vanished objects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf
import pytest

from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.informer import Informer
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME
from elasticsan_snapshotter.local_cluster import LocalCluster

pytestmark = pytest.mark.integration


def _pv(name: str, label: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"informer-test": label}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "csi": {"driver": "iscsi.csi.k8s.io", "volumeHandle": f"h-{name}"},
        },
    }


async def _login() -> kopf.ConnectionInfo:
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    return info


@pytest.fixture
async def api(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    client = KubeApi(_login)
    try:
        yield client
    finally:
        await client.close()


async def _until(what: str, check: Any, seconds: float = 60.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} event within {seconds:.0f}s")


async def test_listed_then_watched_events_reach_the_handler(api: KubeApi) -> None:
    label = uuid.uuid4().hex[:8]
    first, second = f"inf-a-{label}", f"inf-b-{label}"
    await api.create(PERSISTENT_VOLUME, _pv(first, label))
    seen: list[tuple[str | None, str]] = []

    def handler(event_type: str | None, body: Body) -> None:
        if (body["metadata"].get("labels") or {}).get("informer-test") == label:
            seen.append((event_type, body["metadata"]["name"]))

    informer = Informer(api, PERSISTENT_VOLUME, handler)
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 60)
        assert (None, first) in seen  # from the list
        await api.create(PERSISTENT_VOLUME, _pv(second, label))
        await _until("ADDED", lambda: ("ADDED", second) in seen)
        await api.patch(PERSISTENT_VOLUME, second, {"metadata": {"annotations": {"touched": "yes"}}})
        await _until("MODIFIED", lambda: ("MODIFIED", second) in seen)
        await api.delete(PERSISTENT_VOLUME, second)
        await _until("DELETED", lambda: ("DELETED", second) in seen)
    finally:
        await informer.stop()
        await api.delete(PERSISTENT_VOLUME, first)


async def _paged(informer: Informer) -> None:
    await informer._list()


async def _streamed(informer: Informer) -> None:
    """The streaming list until its objects are handed over (without the watch that follows)."""
    informer.synced.clear()
    task = asyncio.create_task(informer._stream_list())
    try:
        await asyncio.wait_for(informer.synced.wait(), 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("first_state", [_paged, _streamed], ids=["paged", "streaming"])
async def test_a_new_list_reports_objects_that_vanished_meanwhile(
    api: KubeApi, first_state: Callable[[Informer], Awaitable[None]]
) -> None:
    label = uuid.uuid4().hex[:8]
    name = f"inf-gone-{label}"
    await api.create(PERSISTENT_VOLUME, _pv(name, label))
    seen: list[tuple[str | None, str]] = []
    informer = Informer(api, PERSISTENT_VOLUME, lambda t, b: seen.append((t, b["metadata"]["name"])))
    await first_state(informer)
    assert (None, name) in seen
    # Deleted while no watch ran (as when a resourceVersion expired): the next list tells.
    await api.delete(PERSISTENT_VOLUME, name)
    for _ in range(100):  # the protection finalizer comes off first
        if await api.get(PERSISTENT_VOLUME, name) is None:
            break
        await asyncio.sleep(0.1)
    await first_state(informer)
    assert ("DELETED", name) in seen


class CountingLists(KubeApi):
    """The real client, counting the paged lists it makes."""

    lists = 0

    async def list_pages(self, resource: Any, namespace: str = "") -> AsyncIterator[tuple[list[Body], str]]:
        CountingLists.lists += 1
        async for page in super().list_pages(resource, namespace):
            yield page


async def test_the_first_state_comes_as_a_streaming_watch_without_a_list() -> None:
    label = uuid.uuid4().hex[:8]
    first, second = f"inf-s-{label}", f"inf-t-{label}"
    client = CountingLists(_login)
    CountingLists.lists = 0
    seen: list[tuple[str | None, str]] = []

    def handler(event_type: str | None, body: Body) -> None:
        if (body["metadata"].get("labels") or {}).get("informer-test") == label:
            seen.append((event_type, body["metadata"]["name"]))

    informer = Informer(client, PERSISTENT_VOLUME, handler)
    try:
        await client.create(PERSISTENT_VOLUME, _pv(first, label))
        informer.start()
        await asyncio.wait_for(informer.synced.wait(), 60)
        # The current state, as a list would give it. The PV controller may set the phase
        # right after the create; that change can come as a MODIFIED right after the sync.
        assert [event for event in seen if event[0] is None] == [(None, first)]
        assert all(event == ("MODIFIED", first) for event in seen[1:])
        await client.create(PERSISTENT_VOLUME, _pv(second, label))
        await _until("ADDED", lambda: ("ADDED", second) in seen)
        assert informer.streaming
        assert CountingLists.lists == 0
    finally:
        await informer.stop()
        for name in (first, second):
            await client.delete(PERSISTENT_VOLUME, name)
        await client.close()
