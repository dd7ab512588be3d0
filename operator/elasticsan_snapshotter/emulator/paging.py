"""List responses: ``{"value": [...], "nextLink": <absolute URL>}``.

The SDK follows ``nextLink`` verbatim except that it replaces ``api-version`` with its own,
so everything else the next page needs (the filter, the position) travels in the link.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from elasticsan_snapshotter.emulator.calls import Call
from elasticsan_snapshotter.emulator.errors import invalid, json_response


def page(call: Call, items: list[dict[str, Any]], page_size: int, extra: dict[str, str]) -> web.Response:
    token = call.query.get("$skiptoken", "0")
    if not token.isdigit():
        raise invalid(f"Invalid $skiptoken '{token}'.", target="$skiptoken")
    start = int(token)
    end = start + max(1, page_size)
    body: dict[str, Any] = {"value": items[start:end]}
    if end < len(items):
        query = urlencode({"api-version": call.api_version, **extra, "$skiptoken": str(end)})
        body["nextLink"] = f"{call.base_url}{call.path}?{query}"
    return json_response(body)
