"""The in-memory stand-in for ``KubeApi`` that unit tests and in-process benchmarks build reconcilers on.

It answers the methods of the operator's client as the API server would, at the level of
objects: creates refuse an existing name and give a uid, every stored version gets a new
``resourceVersion`` and is kept in :attr:`KubeStandIn.history` (what a watch would deliver,
possibly late), patches are JSON merge patches, deletes of a missing object succeed (as the
real client's do), lists select by namespace (``""``: all) and ``key=value`` labels (comma-separated: all must match). Every
call is counted by (verb, plural, subresource). Reads hand out copies, so a reconciler only
sees what it wrote through the API.

``tests/unit/kubernetes/fake_kube.py`` is a different tool: it answers the client at the HTTP
level (resourceVersion conflicts, JSON patch tests, finalizers and ``deletionTimestamp``, the
status subresource), so the client's own request building and error translation run too.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from elasticsan_snapshotter.domain.errors import AlreadyExists, NotFound
from elasticsan_snapshotter.kubernetes.resources import Resource

Body = dict[str, Any]
Key = tuple[str, str, str]  # plural, namespace, name


def merged(target: Any, patch: Any) -> Any:
    """``target`` with a JSON merge patch (RFC 7386) applied: ``None`` removes a key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merged(target.get(key), value)
    return target


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch to ``target`` in place."""
    merged(target, patch)


class KubeStandIn:
    """Objects by (plural, namespace, name), behind the methods of ``KubeApi``."""

    def __init__(self) -> None:
        self.objects: dict[Key, Body] = {}
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.history: list[Body] = []
        """Every version stored, oldest first."""
        self.created: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str, str]] = []
        """Every patch, in order: (plural, name, subresource or ``main``)."""
        self._revision = 100
        self._uid = 0

    # -- for tests --------------------------------------------------------------------------

    def put(self, resource: Resource | str, body: Body) -> Body:
        """Store ``body`` (under a resource or its plural) as the API server would: a new resourceVersion; returns a copy."""
        plural = resource if isinstance(resource, str) else resource.plural
        meta = body["metadata"]
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        key = (plural, meta.get("namespace") or "", meta["name"])
        # One dict per object for its whole life: a test holding a stored object sees each new version.
        stored = self.objects.setdefault(key, {})
        stored.clear()
        stored.update(copy.deepcopy(body))
        self.history.append(copy.deepcopy(body))
        return copy.deepcopy(body)

    def count(self, verb: str, plural: str | None = None) -> int:
        return sum(n for (v, p, _), n in self.calls.items() if v == verb and plural in (None, p))

    def stored(self, plural: str) -> list[Body]:
        """The stored objects of one kind themselves (not copies): a test may play another controller."""
        return [body for (p, _, _), body in self.objects.items() if p == plural]

    def snapshots(self) -> list[Body]:
        return self.stored("volumesnapshots")

    @property
    def events(self) -> list[Body]:
        """The Events posted, oldest first."""
        return self.stored("events")

    # -- the client's methods ---------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str = "") -> Body | None:
        self.calls[("get", resource.plural, "")] += 1
        found = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(
        self, resource: Resource, namespace: str = "", *, label_selector: str | None = None, **_: Any
    ) -> list[Body]:
        self.calls[("list", resource.plural, "")] += 1
        wanted = dict(term.split("=", 1) for term in label_selector.split(",")) if label_selector else {}
        return [
            copy.deepcopy(body)
            for (plural, ns, _), body in self.objects.items()
            if plural == resource.plural
            and namespace in ("", ns)
            and wanted.items() <= (body["metadata"].get("labels") or {}).items()
        ]

    async def create(self, resource: Resource, body: Body, namespace: str = "") -> Body:
        self.calls[("create", resource.plural, "")] += 1
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta["name"] = meta.get("name") or f"{meta.get('generateName') or 'object-'}{len(self.created)}"
        if namespace:
            meta["namespace"] = namespace
        if (resource.plural, meta.get("namespace") or "", meta["name"]) in self.objects:
            raise AlreadyExists(f"{resource.plural} {meta['name']} exists")
        self._uid += 1
        meta.setdefault("uid", f"uid-{self._uid}")
        self.created.append((resource.plural, meta["name"]))
        return self.put(resource, stored)

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        subresource: str = "",
        **_: Any,
    ) -> Body:
        self.calls[("patch", resource.plural, subresource)] += 1
        found = self.objects.get((resource.plural, namespace, name))
        if found is None:
            raise NotFound(f"{resource.plural} {name} not found")
        self.writes.append((resource.plural, name, subresource or "main"))
        updated = copy.deepcopy(found)
        merge_patch(updated, patch)
        return self.put(resource, updated)

    async def delete(
        self, resource: Resource, name: str, namespace: str = "", *, uid: str | None = None
    ) -> None:
        self.calls[("delete", resource.plural, "")] += 1
        if self.objects.pop((resource.plural, namespace, name), None) is not None:
            self.deleted.append((resource.plural, name))

    async def remove_finalizer(self, resource: Resource, obj: Body, finalizer: str) -> bool:
        meta = obj["metadata"]
        stored = self.objects.get((resource.plural, meta.get("namespace") or "", meta["name"]))
        if stored is None or finalizer not in (stored["metadata"].get("finalizers") or []):
            return False
        await self.patch(
            resource,
            meta["name"],
            {"metadata": {"finalizers": [f for f in stored["metadata"]["finalizers"] if f != finalizer]}},
            meta.get("namespace") or "",
        )
        return True


FakeApi = KubeStandIn
"""The name the schedule tests and benchmarks know it by."""

__all__ = ["FakeApi", "KubeStandIn", "merge_patch", "merged"]
