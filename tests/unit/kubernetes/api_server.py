"""A scripted API server in the test's own event loop (aiohttp on 127.0.0.1), for the client's unit tests.

Every request is recorded. ``answer(method, path, *replies)`` scripts a route: the first request
gets the first reply, the next the second, and the last reply answers every request after that.
Unscripted requests get 404 with a metav1.Status body, as from the real API server.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from aiohttp.test_utils import TestServer

from elasticsan_snapshotter.kubernetes.api import KubeApi


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Reply = Callable[[Seen], web.Response]


def ok(body: dict[str, Any] | None = None, code: int = 200) -> Reply:
    return lambda seen: web.json_response(body if body is not None else {}, status=code)


def failure(code: int, reason: str, message: str = "", headers: dict[str, str] | None = None) -> Reply:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
    return lambda seen: web.json_response(
        {**body, "message": message or reason}, status=code, headers=headers
    )


@dataclass
class ApiServer:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    routes: dict[tuple[str, str], deque[Reply]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=lambda: ["token-1"])
    logins: int = 0

    def answer(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = deque(replies)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            json.loads(raw) if raw else None,
        )
        self.seen.append(seen)
        replies = self.routes.get((request.method, request.path))
        if not replies:
            return failure(404, "NotFound", f"{request.path} not found")(seen)
        reply = replies.popleft() if len(replies) > 1 else replies[0]
        return reply(seen)

    async def login(self) -> kopf.ConnectionInfo:
        """Kopf's login as the client calls it: each login hands out the next token."""
        token = self.tokens[min(self.logins, len(self.tokens) - 1)]
        self.logins += 1
        return kopf.ConnectionInfo(server=self.url, scheme="Bearer", token=token)


@asynccontextmanager
async def api_server() -> AsyncIterator[tuple[ApiServer, KubeApi]]:
    server = ApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()
    server.url = str(http.make_url("")).rstrip("/")
    api = KubeApi(server.login, user_agent="tests/1", timeout=10.0)
    try:
        yield server, api
    finally:
        await api.close()
        await http.close()
