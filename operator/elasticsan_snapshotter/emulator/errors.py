"""ARM-shaped errors: ``{"error": {"code", "message", "target"?}}`` with an HTTP status."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ArmError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def not_found(kind: str, name: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{kind}/{name}' was not found.")


def invalid(message: str, target: str | None = None) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target=target)
