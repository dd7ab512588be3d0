"""List-then-watch of one resource, each event handed straight to a callback.

The high-volume kinds (PersistentVolumes, claims, VolumeSnapshots and their contents) are
watched here instead of through Kopf: the callbacks only update a store and enqueue a key,
and Kopf's per-event machinery (a worker task, a logger, a cause, handler matching and
per-object memory for every object) cost more CPU and memory than all of the operator's own
work per snapshot. Kopf still runs the process, the lower-volume kinds and peering.

The contract is the one client-go's reflector keeps: the current state, then a watch from its
resourceVersion with bookmarks; a dropped watch resumes from the last version seen; an
expired version (410 Gone) lists again, and objects that vanished meanwhile are reported
``DELETED``. Events of the list come with type ``None``, as Kopf delivers them.

The current state comes as a streaming list (a watch with ``sendInitialEvents``, as client-go's
WatchList): the API server sends it from its cache, one object at a time, and the changes
follow on the same connection. An API server that refuses it gets a paginated list instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from elasticsan_snapshotter.domain.errors import InvalidRequest, SnapshotterError
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi, WatchExpired
from elasticsan_snapshotter.kubernetes.resources import Resource

logger = logging.getLogger(__name__)

Handler = Callable[[str | None, Body], Awaitable[None] | None]

RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _key(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _vanished(key: str, uid: str) -> Body:
    namespace, _, name = key.partition("/")
    meta = {"name": name, "uid": uid} | ({"namespace": namespace} if namespace else {})
    return {"metadata": meta}


class Informer:
    def __init__(self, api: KubeApi, resource: Resource, handler: Handler, *, namespace: str = "") -> None:
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self._handler = handler
        self._known: dict[str, str] = {}
        """The uid of every object seen, by key: the list after a 410 reports the vanished ones."""
        self.streaming = True
        """List through a streaming watch (``sendInitialEvents``) while the server accepts it."""
        self.synced = asyncio.Event()
        """Set once the first list has been handed over."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _emit(self, event_type: str | None, body: Body) -> None:
        key = _key(body)
        if event_type == "DELETED":
            self._known.pop(key, None)
        else:
            # Only what a DELETED for a vanished object needs besides its key: its uid.
            self._known[key] = str((body.get("metadata") or {}).get("uid") or "")
        try:
            result = self._handler(event_type, body)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s: handling a %s event failed", self.resource.plural, event_type or "listed")

    async def _list(self) -> str:
        # Page by page: the handlers keep what they need of each object, so no more than one
        # page of whole bodies is held at a time.
        seen: set[str] = set()
        version = ""
        async for items, page_version in self.api.list_pages(self.resource, self.namespace):
            version = page_version
            for item in items:
                seen.add(_key(item))
                await self._emit(None, item)
            del items
        await self._vanished(seen)
        self.synced.set()
        return version

    async def _stream_list(self) -> str | None:
        """The list as the first events of a watch, then the watch itself, until it ends.

        The API server sends the objects from its cache one at a time, so neither pages of
        whole bodies nor a gap between the list and the watch. Returns the version to resume
        from, or None when the stream ended before the initial events did.
        """
        seen: set[str] = set()
        version = ""
        synced = False
        # Closed at once when the caller is cancelled between events, so its connection is released.
        async with aclosing(self.api.watch(self.resource, "", self.namespace, initial_events=True)) as events:
            async for event_type, body in events:
                meta = body.get("metadata") or {}
                version = meta.get("resourceVersion") or version
                if event_type == "BOOKMARK":
                    if not synced and (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
                        synced = True
                        await self._vanished(seen)
                        self.synced.set()
                    continue
                if not synced:
                    seen.add(_key(body))
                await self._emit(None if not synced else event_type, body)
        return version if synced else None

    async def _vanished(self, seen: set[str]) -> None:
        for key in [k for k in self._known if k not in seen]:
            await self._emit("DELETED", _vanished(key, self._known[key]))

    async def run(self) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None and self.streaming:
                    try:
                        version = await self._stream_list()
                    except InvalidRequest as exc:
                        # An API server without streaming lists refuses the parameters.
                        logger.info("%s: no streaming list (%s); listing instead", self.resource.plural, exc)
                        self.streaming = False
                    continue
                if version is None:
                    version = await self._list()
                async with aclosing(self.api.watch(self.resource, version, self.namespace)) as events:
                    async for event_type, body in events:
                        failures = 0
                        version = (body.get("metadata") or {}).get("resourceVersion") or version
                        if event_type != "BOOKMARK":
                            await self._emit(event_type, body)
            except WatchExpired:
                version = None  # too old to resume: list again
            except (SnapshotterError, OSError, TimeoutError) as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                logger.warning("%s: watch failed (%s); again in %.1fs", self.resource.plural, exc, delay)
                await asyncio.sleep(delay)


__all__ = ["Informer"]
