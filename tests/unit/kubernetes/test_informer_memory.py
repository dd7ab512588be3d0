"""What the informers and the content store keep per object, and how much of a list they hold at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.kubernetes.api import Bodies, Body, KubeApi, decode_event
from elasticsan_snapshotter.kubernetes.informer import Informer
from elasticsan_snapshotter.kubernetes.resources import VOLUME_SNAPSHOT_CONTENT, Resource
from elasticsan_snapshotter.kubernetes.stores import Store, slim_content

pytestmark = pytest.mark.unit


def _content(i: int) -> Body:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {
            "name": f"content-{i}",
            "uid": f"uid-{i}",
            "resourceVersion": str(100 + i),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"a": "b"},
            "finalizers": ["f"],
            "managedFields": [{"manager": "snapshot-controller", "fieldsV1": {"f:spec": {"f:driver": {}}}}],
        },
        "spec": {"driver": "d", "source": {"volumeHandle": "h"}, "deletionPolicy": "Delete"},
        "status": {"readyToUse": True, "snapshotHandle": "s"},
    }


class PagedApi:
    """Three pages of two objects; records the order of page requests and handler calls."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.pages = [[_content(2 * p), _content(2 * p + 1)] for p in range(3)]

    async def list_pages(self, resource: Resource, namespace: str = "") -> AsyncIterator[tuple[Bodies, str]]:
        for number, page in enumerate(self.pages):
            self.log.append(f"page {number}")
            yield page, "7"

    async def list_with_version(self, resource: Resource, namespace: str = "") -> tuple[Bodies, str]:
        items: Bodies = []
        async for page, _ in self.list_pages(resource, namespace):
            items.extend(page)
        return items, "7"


async def test_a_list_is_handed_over_page_by_page_not_held_whole() -> None:
    api = PagedApi()
    seen: list[tuple[str | None, str]] = []

    def handler(event_type: str | None, body: Body) -> None:
        api.log.append(body["metadata"]["name"])
        seen.append((event_type, body["metadata"]["name"]))

    informer = Informer(cast(KubeApi, api), VOLUME_SNAPSHOT_CONTENT, handler)
    version = await informer._list()
    assert version == "7"
    assert api.log == [
        "page 0", "content-0", "content-1",
        "page 1", "content-2", "content-3",
        "page 2", "content-4", "content-5",
    ]  # fmt: skip
    assert informer.synced.is_set()
    # The next list misses two objects: each is reported DELETED with its name and uid.
    api.pages = [[_content(0), _content(1)], [_content(4), _content(5)]]
    seen.clear()
    await informer._list()
    deleted = [name for event_type, name in seen if event_type == "DELETED"]
    assert sorted(deleted) == ["content-2", "content-3"]


async def test_the_informer_remembers_only_the_uid_of_each_object() -> None:
    api = PagedApi()
    informer = Informer(cast(KubeApi, api), VOLUME_SNAPSHOT_CONTENT, lambda _t, _b: None)
    await informer._list()
    known: dict[str, Any] = informer._known
    assert known == {f"/content-{i}": f"uid-{i}" for i in range(6)}


def test_the_content_store_keeps_no_managed_fields() -> None:
    store = Store(slim_content)
    body = _content(1)
    store.apply("ADDED", body)
    held = store.get("content-1")
    assert held is not None
    assert "managedFields" not in held["metadata"]
    expected = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    assert held["metadata"] == expected
    assert (held["spec"], held["status"], held["kind"]) == (body["spec"], body["status"], body["kind"])
    assert "managedFields" in body["metadata"]  # the event's body is left as it came


def test_the_runtime_stores_contents_slimmed() -> None:
    import dataclasses

    from elasticsan_snapshotter.kubernetes.handlers import Runtime

    field = next(f for f in dataclasses.fields(Runtime) if f.name == "contents")
    assert callable(field.default_factory)
    store = field.default_factory()
    store.apply("ADDED", _content(3))
    held = store.get("content-3")
    assert held is not None
    assert "managedFields" not in held["metadata"]


class NoStreamingApi(PagedApi):
    """An API server that refuses streaming lists (older versions, or the feature turned off)."""

    async def watch(
        self, resource: Resource, resource_version: str, namespace: str = "", *, initial_events: bool = False
    ) -> AsyncIterator[tuple[str, Body]]:
        if initial_events:
            raise InvalidRequest("sendInitialEvents is forbidden")
        await asyncio.Event().wait()
        yield "BOOKMARK", {}


async def test_without_streaming_lists_the_informer_lists_page_by_page() -> None:
    api = NoStreamingApi()
    names: list[str] = []
    informer = Informer(
        cast(KubeApi, api), VOLUME_SNAPSHOT_CONTENT, lambda _t, b: names.append(b["metadata"]["name"])
    )
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
    finally:
        await informer.stop()
    assert not informer.streaming
    assert names == [f"content-{i}" for i in range(6)]
    assert api.log[0] == "page 0"


def test_watch_events_share_their_key_strings() -> None:
    """Parsed one line at a time, each event would otherwise hold its own copy of every key."""
    lines = [json.dumps({"type": "ADDED", "object": _content(i)}).encode() for i in range(2)]
    first, second = (decode_event(line) for line in lines)
    assert first == json.loads(lines[0])
    assert second == json.loads(lines[1])
    keys = [
        next(k for k in event["object"]["metadata"] if k == "resourceVersion") for event in (first, second)
    ]
    assert keys[0] is keys[1]
    spec_keys = [next(iter(event["object"]["spec"])) for event in (first, second)]
    assert spec_keys[0] is spec_keys[1]


def test_watch_events_share_their_short_string_values() -> None:
    """A driver name or a policy repeats on every object; a long value is left as parsed."""
    long_handle = "/subscriptions/" + "0" * 60
    bodies = [
        {"metadata": {"name": f"content-{i}"}, "spec": {"driver": "d.example.com", "handle": long_handle}}
        for i in range(2)
    ]
    first, second = (decode_event(json.dumps({"type": "ADDED", "object": b}).encode()) for b in bodies)
    assert first["object"] == bodies[0]
    assert first["object"]["spec"]["driver"] is second["object"]["spec"]["driver"]
    assert first["object"]["spec"]["handle"] is not second["object"]["spec"]["handle"]


class OneEventApi:
    """A watch that sends one object and then waits; it notes when its stream is closed."""

    def __init__(self) -> None:
        self.closed = False

    async def watch(
        self, resource: Resource, resource_version: str, namespace: str = "", *, initial_events: bool = False
    ) -> AsyncIterator[tuple[str, Body]]:
        try:
            yield "ADDED", {"metadata": {"name": "c1", "uid": "u1", "resourceVersion": "5"}}
            await asyncio.Event().wait()
        finally:
            self.closed = True


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "watch"])
async def test_a_stopped_informer_closes_its_watch_at_once(streaming: bool) -> None:
    # A watch left open until garbage collection keeps its connection (an unclosed transport).
    api = OneEventApi()
    handled = asyncio.Event()

    async def handler(_type: str | None, _body: Body) -> None:
        handled.set()
        await asyncio.Event().wait()  # the informer is stopped while it handles this event

    informer = Informer(cast(KubeApi, api), VOLUME_SNAPSHOT_CONTENT, handler)
    informer.streaming = streaming
    if not streaming:
        informer._list = _no_list  # type: ignore[method-assign]
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(handled.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert api.closed


async def _no_list() -> str:
    return "1"
