"""A small stateful stand-in for the API server, for unit tests and in-process benchmarks.

Objects live in a dict by (plural, namespace, name); create refuses an existing name, delete
treats a missing object as deleted, as the real client does. No watch: callers feed stores.
"""

from __future__ import annotations

from typing import Any

from elasticsan_snapshotter.domain.errors import AlreadyExists
from elasticsan_snapshotter.kubernetes.resources import Resource


class FakeApi:
    """Objects by (plural, namespace, name); enough of the API server for the reconciler."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.created: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self._uid = 0

    async def create(self, resource: Resource, body: dict[str, Any], namespace: str = "") -> dict[str, Any]:
        key = (resource.plural, namespace, body["metadata"].get("name") or f"event-{len(self.created)}")
        if key in self.objects:
            raise AlreadyExists(f"{key} exists")
        self._uid += 1
        stored = {**body, "metadata": {**body["metadata"], "uid": f"uid-{self._uid}", "namespace": namespace}}
        self.objects[key] = stored
        self.created.append((resource.plural, key[2]))
        return stored

    async def get(self, resource: Resource, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.objects.get((resource.plural, namespace, name))

    async def list(
        self, resource: Resource, namespace: str = "", *, label_selector: str | None = None
    ) -> list[Any]:
        key, _, value = (label_selector or "").partition("=")
        return [
            o
            for (plural, ns, _), o in self.objects.items()
            if plural == resource.plural
            and ns == namespace
            and (not key or o["metadata"]["labels"].get(key) == value)
        ]

    async def patch(
        self, resource: Resource, name: str, patch: Any, namespace: str = "", **_: Any
    ) -> dict[str, Any]:
        obj = self.objects[(resource.plural, namespace, name)]
        for part, value in patch.items():
            if part == "metadata":
                obj["metadata"].update({k: v for k, v in value.items() if k != "resourceVersion"})
            else:
                obj[part] = {**(obj.get(part) or {}), **value}
        return obj

    async def delete(
        self, resource: Resource, name: str, namespace: str = "", *, uid: str | None = None
    ) -> None:
        if self.objects.pop((resource.plural, namespace, name), None) is not None:
            self.deleted.append((resource.plural, name))  # like the real client, NotFound counts as deleted

    async def remove_finalizer(self, resource: Resource, obj: dict[str, Any], finalizer: str) -> bool:
        stored = self.objects[
            (resource.plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        ]
        stored["metadata"]["finalizers"] = [
            f for f in stored["metadata"].get("finalizers", []) if f != finalizer
        ]
        return True

    def snapshots(self) -> list[dict[str, Any]]:
        return [o for (plural, _, _), o in self.objects.items() if plural == "volumesnapshots"]
