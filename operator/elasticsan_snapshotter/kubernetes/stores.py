"""In-memory views of watched objects, kept current by Kopf's watch events.

Reconcilers read from these instead of the API server, so a snapshot costs
no extra reads. Only the fields the operator uses are kept, to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME


def object_key(body: Body) -> str:
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


class Store:
    """Latest body per key (``name`` or ``namespace/name``), optionally slimmed."""

    def __init__(self, slim: Callable[[Body], Body] | None = None) -> None:
        self._items: dict[str, Body] = {}
        self._slim = slim

    def apply(self, event_type: str | None, body: Body) -> str:
        key = object_key(body)
        if event_type == "DELETED":
            self._items.pop(key, None)
        elif not _older(body, self._items.get(key)):
            self._items[key] = self._slim(body) if self._slim else body
        return key

    def get(self, key: str) -> Body | None:
        return self._items.get(key)

    def __iter__(self) -> Iterator[Body]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


def _resource_version(body: Body | None) -> int | None:
    value = ((body or {}).get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _older(body: Body, held: Body | None) -> bool:
    """Whether ``body`` is an older version than ``held``.

    A watch event can arrive after the response of a PATCH that came later, and must not
    replace that fresher body. resourceVersions are opaque by contract, but the API server
    hands out etcd revisions, which grow; anything else is never called older.
    """
    if held is None or (held.get("metadata") or {}).get("uid") != (body.get("metadata") or {}).get("uid"):
        return False
    new, old = _resource_version(body), _resource_version(held)
    return new is not None and old is not None and new < old


def slim_content(body: Body) -> Body:
    """A VolumeSnapshotContent without ``managedFields``, which no reconciler reads.

    The server's field-ownership records are more than half of a content's parsed size, and
    the operator keeps every content of its driver.
    """
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def slim_pv(body: Body) -> Body:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion", "v1"),
        "kind": body.get("kind", "PersistentVolume"),
        "metadata": {
            k: meta[k]
            for k in ("name", "uid", "resourceVersion", "annotations", "finalizers", "deletionTimestamp")
            if k in meta
        },
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


class PersistentVolumes(Store):
    """PVs, also indexed by CSI volume handle (what a VolumeSnapshotContent names)."""

    def __init__(self, api: KubeApi) -> None:
        super().__init__(slim_pv)
        self._api = api
        self._by_handle: dict[str, str] = {}

    def apply(self, event_type: str | None, body: Body) -> str:
        key = super().apply(event_type, body)
        handle = _volume_handle(body)
        if handle:
            if event_type == "DELETED":
                self._by_handle.pop(handle, None)
            else:
                self._by_handle[handle] = key
        return key

    async def by_volume_handle(self, handle: str) -> Body | None:
        key = self._by_handle.get(handle)
        if key is not None:
            return self.get(key)
        # The watch may not have caught up (operator start-up): look once more at the source.
        for pv in await self._api.list(PERSISTENT_VOLUME):
            self.apply("ADDED", pv)
        key = self._by_handle.get(handle)
        return self.get(key) if key is not None else None


def _volume_handle(body: Body) -> str | None:
    csi: dict[str, Any] = (body.get("spec") or {}).get("csi") or {}
    handle = csi.get("volumeHandle")
    return str(handle) if handle else None
