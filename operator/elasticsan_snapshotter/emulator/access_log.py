"""One JSON line per answered request, for benchmarks and tests that count calls.

Each line holds the receive time and the answer time (Unix seconds), method, path
(without the query), resource kind, status, the client's User-Agent and its peer
address: distinct peers are distinct TCP connections.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from elasticsan_snapshotter.emulator.resources import parse_path

FLUSH_EVERY = 64
"""Lines buffered before a write; ``close()`` and ``flush()`` write the rest."""


class AccessLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the server
        self._pending = 0

    def write(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        done = time.time()
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        route = parse_path(request.path)
        entry: dict[str, Any] = {
            "start": round(done - seconds, 6),
            "end": round(done, 6),
            "method": request.method,
            "path": request.path,
            "kind": route.kind if route is not None else _kind_of_other(request.path),
            "status": response.status,
            "agent": request.headers.get("User-Agent", ""),
            "peer": f"{peer[0]}:{peer[1]}" if peer else "",
        }
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._pending += 1
        if self._pending >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self._file.close()


def _kind_of_other(path: str) -> str:
    if path.startswith("/_emulator/"):
        return "admin"
    if path.endswith("/token"):
        return "token"
    if "openid-configuration" in path:
        return "openid"
    return "unknown"


def logger_class(log: AccessLog) -> type[AbstractAccessLogger]:
    """An aiohttp access logger class bound to ``log`` (aiohttp instantiates the class itself)."""

    class _Logger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            log.write(request, response, time)

    return _Logger


__all__ = ["AccessLog", "logger_class"]
