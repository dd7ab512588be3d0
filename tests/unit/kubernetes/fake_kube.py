"""A stateful in-memory Kubernetes API server for reconciler unit tests.

It answers the operator's own client (``KubeApi``) at the HTTP level, so the
client's typed helpers and its error translation run unchanged. It keeps what
the reconcilers' contracts depend on: resourceVersions (a stale
``metadata.resourceVersion`` in a merge patch is a 409), JSON patches with
``test`` operations (a failed test is a 422, as kube-apiserver answers),
finalizers and ``deletionTimestamp`` (DELETE only marks an object that has
finalizers; removing the last one deletes it), the status subresource (a main
PATCH ignores ``status``, a ``/status`` PATCH ignores everything else),
``metadata.generation`` and delete preconditions. Every write appends a watch
event to :attr:`FakeKube.watch`, which tests deliver late, twice or out of
order to model stale and reordered watch events.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsan_snapshotter.kubernetes import resources
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi, _translate
from elasticsan_snapshotter.kubernetes.resources import Resource
from kube_stand_in import merged

RESOURCES = {r.plural: r for r in vars(resources).values() if isinstance(r, Resource)}
WITH_STATUS = {
    "volumesnapshots",
    "volumesnapshotcontents",
    "elasticsansnapshotexports",
    "persistentvolumes",
    "persistentvolumeclaims",
}
NOW = "2026-01-01T00:00:00Z"

Key = tuple[str, str, str]  # plural, namespace, name


class Crash(BaseException):
    """The operator process dies here: no handler of the operator catches it."""


@dataclass
class WatchEvent:
    type: str
    resource: Resource
    object: Body


@dataclass
class Request:
    method: str
    plural: str
    name: str
    subresource: str
    body: Any


@dataclass
class FakeKube(KubeApi):
    """The API server; ``crash_at`` and ``fail`` let tests cut a request short."""

    objects: dict[Key, Body] = field(default_factory=dict)
    watch: list[WatchEvent] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    crash_when: Callable[[Request], bool] | None = None
    """Raise :class:`Crash` *before* a request for which this returns True."""
    fail_when: Callable[[Request], tuple[int, str] | None] | None = None
    """Answer a request with this (HTTP status, Status reason) instead of serving it."""
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _uid: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        async def no_login() -> Any:
            raise AssertionError("the fake API server needs no login")

        super().__init__(no_login)

    # -- what tests read and seed ------------------------------------------------------------

    def get_object(self, resource: Resource, name: str, namespace: str = "") -> Body | None:
        found = self.objects.get((resource.plural, namespace if resource.namespaced else "", name))
        return copy.deepcopy(found) if found is not None else None

    def all(self, resource: Resource) -> list[Body]:
        return [copy.deepcopy(o) for (plural, _, _), o in self.objects.items() if plural == resource.plural]

    def seed(self, resource: Resource, body: Body) -> Body:
        """Create an object as another controller or a user would (a watch event is recorded)."""
        meta = body.setdefault("metadata", {})
        return self._create(resource, meta.get("namespace", "") if resource.namespaced else "", body)

    def patch_direct(self, resource: Resource, name: str, patch: Body, namespace: str = "") -> Body:
        """A merge patch by another actor (not counted among the operator's requests)."""
        key = (resource.plural, namespace if resource.namespaced else "", name)
        return self._patch(resource, key, patch, "application/merge-patch+json", "", "PATCH", "")

    def patch_status_direct(
        self, resource: Resource, name: str, status: Body | None, namespace: str = ""
    ) -> None:
        if status is None:
            return
        key = (resource.plural, namespace if resource.namespaced else "", name)
        self._patch(resource, key, {"status": status}, "application/merge-patch+json", "status", "PATCH", "")

    def delete_direct(self, resource: Resource, name: str, namespace: str = "") -> None:
        key = (resource.plural, namespace if resource.namespaced else "", name)
        if key in self.objects:
            self._delete(resource, key, {}, "DELETE", "")

    def events_about(self, name: str, reason: str | None = None) -> list[Body]:
        return [
            e
            for e in self.all(resources.EVENT)
            if e["involvedObject"].get("name") == name and (reason is None or e["reason"] == reason)
        ]

    def writes(self, resource: Resource, name: str | None = None) -> Counter[str]:
        """Writes per kind (``PATCH``, ``PATCH/status``, ``POST``, ``DELETE``) to one resource."""
        out: Counter[str] = Counter()
        for r in self.requests:
            if r.method != "GET" and r.plural == resource.plural and (name is None or r.name == name):
                out[r.method + (f"/{r.subresource}" if r.subresource else "")] += 1
        return out

    def take_watch(self) -> list[WatchEvent]:
        events, self.watch = self.watch, []
        return events

    # -- the HTTP surface ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        resource, namespace, name, subresource = _parse(path)
        request = Request(method, resource.plural, name, subresource, copy.deepcopy(body))
        if self.crash_when is not None and self.crash_when(request):
            raise Crash(f"{method} {path}")
        self.requests.append(request)
        if self.fail_when is not None:
            failure = self.fail_when(request)
            if failure is not None:
                raise self._error(failure[0], failure[1], "injected", method, path)
        key = (resource.plural, namespace, name)
        if method == "GET" and not name:
            return self._list(resource, namespace, (params or {}).get("labelSelector"))
        if method == "POST":
            return copy.deepcopy(self._create(resource, namespace, copy.deepcopy(body)))
        current = self.objects.get(key)
        if current is None:
            raise self._error(404, "NotFound", f'{resource.plural} "{name}" not found', method, path)
        if method == "GET":
            return copy.deepcopy(current)
        if method == "DELETE":
            return self._delete(resource, key, body or {}, method, path)
        if method == "PATCH":
            return self._patch(resource, key, body, content_type, subresource, method, path)
        raise AssertionError(f"unexpected {method} {path}")

    def _error(
        self, status: int, reason: str, message: str, method: str, path: str, *, json_patch: bool = False
    ) -> Exception:
        payload: dict[str, Any] = {
            "kind": "Status",
            "status": "Failure",
            "reason": reason,
            "message": message,
        }
        if json_patch:
            # As kube-apiserver answers a JSON patch that does not apply: a bare 422, the reason lost.
            payload["message"] = "the server rejected our request due to an error in our request"
        return _translate(status, json.dumps(payload), method, path, None, json_patch=json_patch)

    def _list(self, resource: Resource, namespace: str, selector: str | None) -> Body:
        items = []
        for (plural, ns, _), obj in self.objects.items():
            if plural != resource.plural or (namespace and ns != namespace):
                continue
            if selector:
                k, _, v = selector.partition("=")
                if ((obj.get("metadata") or {}).get("labels") or {}).get(k) != v:
                    continue
            items.append(copy.deepcopy(obj))
        return {"items": items, "metadata": {"resourceVersion": str(self._peek_rv())}}

    def _peek_rv(self) -> int:
        value = next(self._rv)
        self._rv = itertools.count(value)
        return value

    def _create(self, resource: Resource, namespace: str, body: Body) -> Body:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{next(self._uid):05d}"
        key = (resource.plural, namespace if resource.namespaced else "", meta["name"])
        if key in self.objects:
            raise self._error(
                409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists', "POST", ""
            )
        if resource.namespaced:
            meta["namespace"] = namespace
        meta.setdefault("uid", f"00000000-0000-4000-8000-{next(self._uid):012d}")
        meta.setdefault("creationTimestamp", NOW)
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        body.setdefault("apiVersion", resource.api_version)
        body.setdefault("kind", resource.kind)
        return self._store(resource, key, body, "ADDED")

    def _store(self, resource: Resource, key: Key, body: Body, event: str) -> Body:
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = body
        self.watch.append(WatchEvent(event, resource, copy.deepcopy(body)))
        return body

    def _delete(self, resource: Resource, key: Key, options: Body, method: str, path: str) -> Body:
        current = self.objects[key]
        wanted_uid = (options.get("preconditions") or {}).get("uid")
        if wanted_uid and wanted_uid != current["metadata"].get("uid"):
            raise self._error(409, "Conflict", "Precondition failed: UID in precondition", method, path)
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                updated = copy.deepcopy(current)
                updated["metadata"]["deletionTimestamp"] = NOW
                self._store(resource, key, updated, "MODIFIED")
            return copy.deepcopy(self.objects[key])
        return self._remove(resource, key)

    def _remove(self, resource: Resource, key: Key) -> Body:
        gone = self.objects.pop(key)
        gone["metadata"]["resourceVersion"] = str(next(self._rv))
        self.watch.append(WatchEvent("DELETED", resource, copy.deepcopy(gone)))
        return copy.deepcopy(gone)

    def _patch(
        self, resource: Resource, key: Key, patch: Any, content_type: str, sub: str, method: str, path: str
    ) -> Body:
        current = self.objects[key]
        if content_type == "application/json-patch+json":
            try:
                updated = _json_patch(copy.deepcopy(current), patch)
            except _PatchFailed as exc:
                raise self._error(422, "Invalid", str(exc), method, path, json_patch=True) from None
        else:
            wanted_rv = ((patch or {}).get("metadata") or {}).get("resourceVersion")
            if wanted_rv is not None and wanted_rv != current["metadata"]["resourceVersion"]:
                raise self._error(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                    method,
                    path,
                )
            updated = merged(copy.deepcopy(current), patch)
        if resource.plural in WITH_STATUS:
            if sub == "status":
                status = updated.get("status")
                updated = copy.deepcopy(current)
                if status is None:
                    updated.pop("status", None)
                else:
                    updated["status"] = status
            elif "status" in current or "status" in updated:
                updated["status"] = copy.deepcopy(current.get("status"))
                if updated["status"] is None:
                    del updated["status"]
        meta = updated["metadata"]
        for fixed in ("uid", "name", "namespace", "creationTimestamp", "deletionTimestamp"):
            if fixed in current["metadata"]:
                meta[fixed] = current["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        if current["metadata"].get("deletionTimestamp") and set(meta.get("finalizers") or []) - set(
            current["metadata"].get("finalizers") or []
        ):
            raise self._error(
                422,
                "Forbidden",
                "no new finalizers can be added if the object is being deleted",
                method,
                path,
            )
        if updated.get("spec") != current.get("spec"):
            meta["generation"] = int(current["metadata"].get("generation") or 1) + 1
        if updated == current:
            return copy.deepcopy(current)  # a no-op write keeps the resourceVersion, as the server does
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(resource, key)
        return copy.deepcopy(self._store(resource, key, updated, "MODIFIED"))


class _PatchFailed(Exception):
    pass


def _parse(path: str) -> tuple[Resource, str, str, str]:
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = RESOURCES[rest[0]]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    return resource, namespace, name, subresource


def _json_patch(doc: Body, ops: list[dict[str, Any]]) -> Body:
    """The subset of RFC 6902 the operator sends: test, remove, add, replace."""
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.get(p)
            if node is None:
                raise _PatchFailed(f"missing path {op['path']}")
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            exists = index < len(node)
        else:
            exists = last in node
        kind = op["op"]
        if kind == "test":
            value = node[index] if isinstance(node, list) and exists else (node.get(last) if exists else None)
            if not exists or value != op["value"]:
                raise _PatchFailed(f"testing value {op['path']} failed: test failed")
        elif kind == "remove":
            if not exists:
                raise _PatchFailed(f"Unable to remove nonexistent key: {op['path']}")
            if isinstance(node, list):
                del node[index]
            else:
                del node[last]
        elif kind in ("add", "replace"):
            if isinstance(node, list):
                if kind == "add":
                    node.insert(index, op["value"])
                else:
                    node[index] = op["value"]
            else:
                node[last] = op["value"]
        else:
            raise AssertionError(f"unsupported op {kind}")
    return doc
