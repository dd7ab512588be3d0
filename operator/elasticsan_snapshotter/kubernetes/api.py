"""A small asynchronous Kubernetes API client over aiohttp.

Kopf watches and delivers events; everything else the operator reads or
writes goes through this client. It reuses Kopf's login (``ConnectionInfo``),
so the operator authenticates once, the same way, in and out of a cluster,
and it keeps the memory of the full ``kubernetes`` client out of the process.
API failures become domain errors here, at the edge.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf

from elasticsan_snapshotter import health
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    Throttled,
    Transient,
    Unauthenticated,
)
from elasticsan_snapshotter.kubernetes.resources import Resource

Body = dict[str, Any]
Bodies = list[Body]
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class Conflict(SnapshotterError):
    """The object changed since it was read (HTTP 409 on update); read again and retry."""

    reason = "Conflict"
    retryable = True


class WatchExpired(SnapshotterError):
    """The watch's resourceVersion is too old (HTTP 410 Gone): list again."""

    reason = "Expired"
    retryable = True
    default_retry_after = 0.0


WATCH_SECONDS = 300
"""Server-side lifetime of one watch request; the informer resumes from the last version."""
PAGE_SIZE = 500
"""Objects per list page: the most whole bodies a list holds at once."""

SHARED_VALUE_LENGTH = 40
"""String values up to this length are interned too: drivers, classes, phases, policies repeat."""


def _shared(value: Any) -> Any:
    return sys.intern(value) if type(value) is str and len(value) <= SHARED_VALUE_LENGTH else value


# One watch event per line, so the parser's sharing of repeated keys (within one document)
# never applies: interned, every stored object's keys are one set of strings, not a copy each
# (about a quarter of what 10,000 stored PVs and contents take), and so are its short string
# values (another eighth; the uids and names among them cost an entry each in the table).
_EVENT_DECODER = json.JSONDecoder(
    object_pairs_hook=lambda pairs: {sys.intern(k): _shared(v) for k, v in pairs}
)


def decode_event(line: bytes) -> Any:
    """One watch event, its keys interned."""
    return _EVENT_DECODER.decode(line.decode("utf-8"))


class KubeApi:
    """JSON over HTTPS to the API server, with Kopf's credentials."""

    def __init__(
        self,
        login: Callable[[], Awaitable[kopf.ConnectionInfo]],
        *,
        user_agent: str = "elasticsan-snapshotter",
        timeout: float = 60.0,
    ) -> None:
        self._login = login
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()

    async def _ensure_session(self, *, renew: bool = False) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is not None and not renew:
                return self._session
            if self._session is not None:
                await self._session.close()
            info = await self._login()
            self._server = info.server.rstrip("/")
            headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
            if info.token:
                headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
            connector = aiohttp.TCPConnector(ssl=_ssl_context(info), limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers=headers, timeout=self._timeout)
            return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        for attempt in (1, 2):
            session = await self._ensure_session(renew=attempt == 2)
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": content_type} if data is not None else {}
            try:
                async with session.request(
                    method, self._server + path, data=data, params=params, headers=headers
                ) as resp:
                    if resp.status == 401:
                        continue  # credentials rotated (projected tokens): log in again once, then Forbidden
                    text = await resp.text()
                    if resp.status == 401:
                        health.CREDENTIALS.refused(health.KUBERNETES, f"{method} {path}: HTTP 401")
                    elif resp.status < 500:
                        health.CREDENTIALS.worked(health.KUBERNETES)
                    if resp.status >= 400:
                        raise _translate(
                            resp.status,
                            text,
                            method,
                            path,
                            resp.headers.get("Retry-After"),
                            json_patch=content_type == JSON_PATCH,
                        )
                    return json.loads(text) if text else {}
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Transient(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        raise Unauthenticated(f"{method} {path}: unauthorized after logging in again")

    # -- typed helpers ---------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str = "") -> Body | None:
        try:
            return await self.request("GET", resource.path(name, namespace))
        except NotFound:
            return None

    async def list(
        self, resource: Resource, namespace: str = "", *, label_selector: str | None = None
    ) -> list[Body]:
        items: list[Body] = []
        params: dict[str, str] = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", resource.path(namespace=namespace), params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def list_with_version(self, resource: Resource, namespace: str = "") -> tuple[Bodies, str]:
        """Every object (pages of 500) and the resourceVersion to watch from."""
        items: Bodies = []
        version = ""
        async for page, page_version in self.list_pages(resource, namespace):
            items.extend(page)
            version = page_version
        return items, version

    async def list_pages(self, resource: Resource, namespace: str = "") -> AsyncIterator[tuple[Bodies, str]]:
        """The objects a page of 500 at a time, each with the list's resourceVersion.

        A caller that keeps only part of each object holds one page of whole bodies at a
        time, not the whole collection (10,000 PVs are tens of MiB parsed).
        """
        params: dict[str, str] = {"limit": str(PAGE_SIZE)}
        while True:
            page = await self.request("GET", resource.path(namespace=namespace), params=params)
            meta = page.get("metadata") or {}
            yield page.get("items") or [], str(meta.get("resourceVersion") or "")
            if not meta.get("continue"):
                return
            params["continue"] = str(meta["continue"])

    async def watch(
        self, resource: Resource, resource_version: str, namespace: str = "", *, initial_events: bool = False
    ) -> AsyncGenerator[tuple[str, Body], None]:
        """Watch events (type, object) from ``resource_version`` until the server ends the watch.

        ``initial_events``: a streaming list (``sendInitialEvents``): every current object as
        ADDED, then a BOOKMARK annotated ``k8s.io/initial-events-end``, then the changes.
        """
        session = await self._ensure_session()
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        if initial_events:
            params |= {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
        path = resource.path(namespace=namespace)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=WATCH_SECONDS + 60)
        try:
            async with session.get(self._server + path, params=params, timeout=timeout) as resp:
                if resp.status == 410:
                    raise WatchExpired(f"watch {path}: resourceVersion {resource_version} expired")
                if resp.status >= 400:
                    text = await resp.text()
                    raise _translate(resp.status, text, "GET", path, resp.headers.get("Retry-After"))
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = decode_event(line)
                    kind, obj = str(event.get("type")), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise WatchExpired(f"watch {path}: {obj.get('message')}")
                        raise Transient(f"watch {path}: {obj.get('message')}")
                    yield kind, obj
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"watch {path}: {type(exc).__name__}: {exc}") from exc

    async def create(self, resource: Resource, body: Body, namespace: str = "") -> Body:
        return await self.request("POST", resource.path(namespace=namespace), body=body)

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        subresource: str = "",
        content_type: str = MERGE_PATCH,
    ) -> Body:
        return await self.request(
            "PATCH", resource.path(name, namespace, subresource), body=patch, content_type=content_type
        )

    async def delete(
        self, resource: Resource, name: str, namespace: str = "", *, uid: str | None = None
    ) -> None:
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self.request("DELETE", resource.path(name, namespace), body=body)
        except NotFound:
            return

    async def remove_finalizer(self, resource: Resource, obj: Body, finalizer: str) -> bool:
        """Remove one finalizer with a JSON patch that fails if the list changed meanwhile.

        ``obj`` may be stale (others add and remove finalizers too): when the patch's ``test``
        fails, the object is read again and the removal retried.
        """
        meta = obj["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "")
        for _ in range(5):
            finalizers: list[str] = list((obj.get("metadata") or {}).get("finalizers") or [])
            if finalizer not in finalizers:
                return False
            index = finalizers.index(finalizer)
            ops = [
                {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{index}"},
            ]
            try:
                await self.patch(resource, name, ops, namespace, content_type=JSON_PATCH)
            except NotFound:
                return False
            except Conflict:
                fresh = await self.get(resource, name, namespace)
                if fresh is None:
                    return False
                obj = fresh
                continue
            return True
        raise Conflict(f"the finalizers of {resource.kind} {name} kept changing; will retry")


def _translate(
    status: int, text: str, method: str, path: str, retry_after: str | None, *, json_patch: bool = False
) -> SnapshotterError:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    message = payload.get("message") or text
    reason = payload.get("reason")
    causes = (payload.get("details") or {}).get("causes") or []
    where = f"{method} {path}: {message}"
    if status == 404:
        return NotFound(where)
    if status == 409:
        # metav1.Status.reason tells a create of an existing name from a stale update.
        return AlreadyExists(where) if reason == "AlreadyExists" else Conflict(where)
    if status == 401:
        return Unauthenticated(where)  # already after a fresh login: see request()
    if status == 403:
        return Forbidden(where)
    if status == 422 and json_patch and not causes:
        # kube-apiserver answers a JSON patch that no longer applies (its `test` failed, the
        # element it removes is gone) with a bare 422; an invalid result carries field causes.
        return Conflict(f"{where} (the JSON patch no longer applies: the object changed)")
    if status in (400, 422):
        return InvalidRequest(where)  # a bug or bad input: retrying the same request cannot help
    if status == 429:
        return Throttled(where, retry_after=float(retry_after) if retry_after else None)
    return Transient(where)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=info.ca_path)
    if info.ca_data:
        context.load_verify_locations(cadata=_text(info.ca_data))
    cert_path, key_path = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl can only load client certificates from files.
        cert_path = _spill(info.certificate_data, ".crt")
        key_path = _spill(info.private_key_data, ".key")
    if cert_path and key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


def _text(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        raw = base64.b64decode(raw)
    return raw.decode()


def _spill(data: bytes | str, suffix: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as fh:
        fh.write(_text(data))
        return fh.name
