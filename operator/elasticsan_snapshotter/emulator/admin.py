"""The emulator-only admin API under ``/_emulator/`` (bearer-protected like ARM).

GET  /_emulator/info               identity and current settings
GET  /_emulator/counters           {"requests": [{"method", "kind", "status", "count"}]}
POST /_emulator/counters/reset
POST /_emulator/written            {"volumeId": <ARM id>, "writtenGiB": N}
POST /_emulator/iscsi/login        {"targetIqn": IQN, "targetPortal"?: "host:port"}
                                   -> {"volumeId", "path" (the backing file), "sizeBytes"}
GET  /_emulator/faults             the active fault plan
PUT  /_emulator/faults             {"spec": "..."} or {"latency_ms": N, "rules": [...]}; "seed": N restarts the draws
DELETE /_emulator/faults
PATCH /_emulator/settings          {"lroSeconds", "lroRetryAfter", "exportSeconds", "pageSize",
                                    "latencyMs", "throttleRetryAfter"} (any subset)
POST /_emulator/tokens/revoke      every issued token becomes invalid
GET  /_emulator/resources          every stored resource as the API renders it
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from elasticsan_snapshotter.emulator.errors import ArmError, invalid, json_response
from elasticsan_snapshotter.emulator.faults import parse_json, parse_spec

if TYPE_CHECKING:
    from elasticsan_snapshotter.emulator.server import Emulator

_SETTINGS = {
    "lroSeconds": ("lro_seconds", float),
    "lroRetryAfter": ("lro_retry_after", int),
    "throttleRetryAfter": ("throttle_retry_after", int),
    "exportSeconds": ("export_seconds", float),
    "pageSize": ("page_size", int),
    "latencyMs": ("latency_ms", int),
}


class AdminApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle(self, request: web.Request) -> web.Response:
        try:
            self.emulator.tokens.authenticate(request.headers.get("Authorization"))
            body = await self._body(request)
            return self._route(request.method, request.path.removeprefix("/_emulator"), body)
        except ArmError as error:
            return error.response()
        finally:
            self.emulator.store.save_if_dirty()
            if self.emulator.access_log is not None:
                # Readers of the access log ask the admin API first, so they see every line.
                self.emulator.access_log.flush()

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid("The admin request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise invalid("The admin request body must be a JSON object.")
        return body

    def _route(self, method: str, path: str, body: dict[str, Any]) -> web.Response:
        emu = self.emulator
        emu.operations.settle()
        if (method, path) == ("GET", "/info"):
            return json_response({"identity": emu.store.identity, "settings": self._settings()})
        if (method, path) == ("GET", "/counters"):
            return json_response({"requests": emu.counters.to_json()})
        if (method, path) == ("POST", "/counters/reset"):
            emu.counters.reset()
            return json_response({"requests": []})
        if (method, path) == ("POST", "/written"):
            volume_id, written = body.get("volumeId"), body.get("writtenGiB")
            if not isinstance(volume_id, str) or not isinstance(written, int) or isinstance(written, bool):
                raise invalid('Expected {"volumeId": <ARM id>, "writtenGiB": <integer>}.')
            volume = emu.elasticsan.set_written(volume_id, written)
            return json_response({"volumeId": volume["id"], "writtenGiB": volume["written_gib"]})
        if (method, path) == ("POST", "/iscsi/login"):
            iqn, portal = body.get("targetIqn"), body.get("targetPortal")
            if not isinstance(iqn, str) or not (portal is None or isinstance(portal, str)):
                raise invalid('Expected {"targetIqn": <IQN>, "targetPortal": "<host>:<port>"}.')
            return json_response(emu.elasticsan.login(iqn, portal))
        if path == "/faults":
            return self._faults(method, body)
        if (method, path) == ("PATCH", "/settings"):
            return self._update_settings(body)
        if (method, path) == ("POST", "/tokens/revoke"):
            return json_response({"revoked": emu.tokens.revoke_all()})
        if (method, path) == ("GET", "/resources"):
            records = sorted(emu.store.resources.values(), key=lambda r: str(r["id"]).lower())
            return json_response({"value": [emu.render(r) for r in records]})
        raise ArmError(404, "NotFound", f"No admin endpoint {method} /_emulator{path}.")

    def _faults(self, method: str, body: dict[str, Any]) -> web.Response:
        injector = self.emulator.faults
        if method == "PUT":
            try:
                plan = parse_spec(body["spec"]) if "spec" in body else parse_json(body)
            except (ValueError, KeyError, TypeError) as error:
                raise invalid(f"Invalid fault plan: {error}") from None
            seed = body.get("seed")
            injector.replace(plan, seed=int(seed) if seed is not None else None)
        elif method == "DELETE":
            injector.replace(parse_spec(""))
        elif method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on /_emulator/faults.")
        return json_response(injector.plan.to_json())

    def _settings(self) -> dict[str, Any]:
        config = self.emulator.config
        return {name: getattr(config, attr) for name, (attr, _) in _SETTINGS.items()}

    def _update_settings(self, body: dict[str, Any]) -> web.Response:
        config = self.emulator.config
        for name, value in body.items():
            if name not in _SETTINGS:
                raise invalid(f"Unknown setting '{name}'; known: {', '.join(_SETTINGS)}.")
            attr, kind = _SETTINGS[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise invalid(f"Setting '{name}' must be a non-negative number.")
            setattr(config, attr, kind(value))
        return json_response(self._settings())
