"""The HTTPS server: token endpoints, ARM routing, authentication, faults and counters."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from elasticsan_snapshotter.emulator import compute, elasticsan
from elasticsan_snapshotter.emulator.access_log import AccessLog, logger_class
from elasticsan_snapshotter.emulator.admin import AdminApi
from elasticsan_snapshotter.emulator.calls import Call
from elasticsan_snapshotter.emulator.certs import ensure_certificates, server_ssl_context
from elasticsan_snapshotter.emulator.config import EmulatorConfig, format_seconds
from elasticsan_snapshotter.emulator.contents import Contents, adopt_contents
from elasticsan_snapshotter.emulator.counters import DROPPED, RequestCounters
from elasticsan_snapshotter.emulator.errors import ArmError
from elasticsan_snapshotter.emulator.faults import FaultInjector, FaultRule, parse_spec
from elasticsan_snapshotter.emulator.lro import Operations
from elasticsan_snapshotter.emulator.resources import (
    COMPUTE_PROVIDER,
    DISK_SNAPSHOTS,
    OPERATIONS,
    PRE_BACKUP,
    PRE_RESTORE,
    TYPES,
    VOLUME_GROUPS,
    Route,
    parse_path,
)
from elasticsan_snapshotter.emulator.seed import apply_seed
from elasticsan_snapshotter.emulator.state import Record, Store
from elasticsan_snapshotter.emulator.tokens import READER, Principal, TokenService

log = logging.getLogger("elasticsan_snapshotter.emulator")

_OPENID = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_WRITES = frozenset({"PUT", "PATCH", "DELETE", "POST"})
_STATUS_CODES = {
    400: "BadRequest",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class _Dropped(Exception):
    """The connection was closed on purpose; no response is sent."""


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.certificates = ensure_certificates(config.state_dir)
        self.store = Store(config.state_dir)
        self.store.load()
        self._init_identity()
        self.tokens = TokenService(self.store, config.token_lifetime, config.federated_token)
        self.operations = Operations(self.store, config)
        self.contents = Contents(config.state_dir)
        adopt_contents(self.store, self.contents)
        self.elasticsan = elasticsan.ElasticSanService(self.store, self.operations, config, self.contents)
        self.compute = compute.ComputeService(self.store, self.operations, config, self.contents)
        self.elasticsan.disk_snapshot_progress = self.compute.progress
        self.faults = FaultInjector(parse_spec(config.faults), config.fault_seed)
        self.counters = RequestCounters()
        self.admin = AdminApi(self)
        self.access_log: AccessLog | None = None
        if config.seed_file is not None:
            apply_seed(config.seed_file, self.store, self.operations, self.elasticsan, self.compute)
        self.store.save()

    def _init_identity(self) -> None:
        ident = self.store.identity
        wanted = {
            "subscription_id": self.config.subscription_id,
            "tenant_id": self.config.tenant_id,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "reader_client_id": self.config.reader_client_id,
            "reader_client_secret": self.config.reader_client_secret,
        }
        for key, value in wanted.items():
            if value is not None:
                ident[key] = value
            elif key not in ident:
                ident[key] = secrets.token_urlsafe(24) if key.endswith("secret") else str(uuid.uuid4())
        self.store.mark_dirty()

    def render(self, record: Record) -> dict[str, Any]:
        if record["kind"] == DISK_SNAPSHOTS:
            return self.compute.render(record)
        return self.elasticsan.render(record)

    # HTTP ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_arm_errors])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        base_url = f"https://{request.host}"
        path = request.path
        if path.startswith("/_emulator/"):
            return await self.admin.handle(request)
        kind = "unknown"
        try:
            kind, response = await self._serve(request, base_url)
        except ArmError as error:
            response = error.response()
        except _Dropped:
            self.counters.add(request.method, _kind_of(path), DROPPED)
            # The transport is already aborted: nothing of this response reaches the client.
            return web.Response(status=500)
        self.counters.add(request.method, kind if kind != "unknown" else _kind_of(path), response.status)
        return response

    async def _serve(self, request: web.Request, base_url: str) -> tuple[str, web.Response]:
        path = request.path
        if (match := _OPENID.match(path)) and request.method == "GET":
            return "openid", self.tokens.openid_configuration(base_url, match.group(1))
        if (match := _TOKEN.match(path)) and request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
            return "token", self.tokens.token(match.group(1), form)

        latency = self.config.latency_ms + self.faults.plan.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        principal = self.tokens.authenticate(request.headers.get("Authorization"))
        route = parse_path(path)
        if route is None:
            raise ArmError(404, "InvalidResourceType", f"No resource type is served at '{path}'.")
        if route.subscription.lower() != self.store.identity["subscription_id"].lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{route.subscription}' could not be found."
            )
        fault = self.faults.decide(request.method, route.kind)
        if fault is not None:
            self._request_fault(request, fault)
        api_version = self._api_version(request, route)
        if principal.role == READER and request.method in _WRITES:
            raise _forbidden(principal, request.method, route, path)
        body = await _read_json(request) if request.method in _WRITES else None
        self.operations.settle()
        call = Call(
            method=request.method,
            path=path,
            route=route,
            query=request.query,
            headers=request.headers,
            body=body,
            principal=principal,
            base_url=base_url,
            api_version=api_version,
            fault=fault,
        )
        try:
            response = self._route(call)
        finally:
            self.store.save_if_dirty(writes=request.method in _WRITES)
        if fault is not None and fault.action == "drop-after":
            _drop(request)
        return route.kind, response

    def _route(self, call: Call) -> web.Response:
        route = call.route
        if route.kind == OPERATIONS:
            if call.method != "GET":
                raise ArmError(405, "MethodNotAllowed", "Operations are read with GET.")
            op_id = route.names[1]
            if route.variant == "status":
                return self.operations.status_response(op_id, call.path)
            return self.operations.result_response(op_id, call.base_url, self.render)
        if route.kind == DISK_SNAPSHOTS:
            return self.compute.handle(call)
        return self.elasticsan.handle(call)

    def _request_fault(self, request: web.Request, fault: FaultRule) -> None:
        if fault.action == "drop":
            _drop(request)
        status = fault.status
        if status is None:
            return
        headers: dict[str, str] = {}
        if status in (429, 503):
            retry_after = (
                fault.retry_after if fault.retry_after is not None else self.config.throttle_retry_after
            )
            headers["Retry-After"] = format_seconds(retry_after)
        raise ArmError(
            status,
            _STATUS_CODES.get(status, "InjectedFault"),
            f"Injected fault: {request.method} answered {status}.",
            headers=headers,
        )

    @staticmethod
    def _api_version(request: web.Request, route: Route) -> str:
        version = request.query.get("api-version")
        if route.kind == OPERATIONS:
            return version or ""
        if not version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required.",
            )
        if route.kind == DISK_SNAPSHOTS:
            ok = compute.API_VERSION_PATTERN.match(version) is not None
        else:
            ok = version in elasticsan.API_VERSIONS
        if not ok:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for api version '{version}' of {route.kind}.",
            )
        return version


@web.middleware
async def _arm_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure is answered as an ARM error in JSON, never as aiohttp's plain text."""
    try:
        return await handler(request)
    except ArmError as error:
        return error.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _STATUS_CODES.get(error.status, error.reason.replace(" ", ""))
        kept = {k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")}
        return ArmError(error.status, code, error.reason, headers=kept).response()
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.exception("emulator failure answering %s %s", request.method, request.path)
        message = f"The emulator failed: {type(error).__name__}: {error}"
        return ArmError(500, "InternalServerError", message).response()


def _kind_of(path: str) -> str:
    route = parse_path(path)
    return route.kind if route is not None else "unknown"


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise _Dropped()


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ArmError(
            400, "InvalidRequestContent", f"The request content is not valid JSON: {error}"
        ) from None


def _forbidden(principal: Principal, method: str, route: Route, path: str) -> ArmError:
    if route.kind in (PRE_BACKUP, PRE_RESTORE):
        action = f"{TYPES[VOLUME_GROUPS]}/{route.kind}/action"
    elif route.kind == DISK_SNAPSHOTS:
        action = f"{COMPUTE_PROVIDER}/snapshots/{'delete' if method == 'DELETE' else 'write'}"
    else:
        action = f"{TYPES.get(route.kind, route.kind)}/{'delete' if method == 'DELETE' else 'write'}"
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{principal.client_id}' with object id '{principal.client_id}' does not have "
        f"authorization to perform action '{action}' over scope '{path}' or the scope is invalid. "
        "If access was recently granted, please refresh your credentials.",
    )


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(config: EmulatorConfig, ready: Callable[[dict[str, Any]], Awaitable[None] | None]) -> None:
    """Serve until SIGTERM or SIGINT; ``ready`` receives the connection details once listening."""
    emulator = Emulator(config)
    access = AccessLog(config.access_log) if config.access_log is not None else None
    if access is not None:
        emulator.access_log = access
        runner = web.AppRunner(
            emulator.app(),
            access_log=logging.getLogger("elasticsan_snapshotter.emulator.access"),
            access_log_class=logger_class(access),
            handle_signals=False,
        )
    else:
        runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    sock = _listen_socket(config.host, config.port)
    site = web.SockSite(runner, sock, ssl_context=server_ssl_context(emulator.certificates))
    await site.start()
    port = sock.getsockname()[1]
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    endpoint = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ident = emulator.store.identity
    info = {
        "endpoint": endpoint,
        "authority": endpoint,
        "ca_cert": str(emulator.certificates.ca_cert.resolve()),
        "subscription_id": ident["subscription_id"],
        "tenant_id": ident["tenant_id"],
        "client_id": ident["client_id"],
        "client_secret": ident["client_secret"],
        "reader_client_id": ident["reader_client_id"],
        "reader_client_secret": ident["reader_client_secret"],
        "credential_scope": "https://management.azure.com/.default",
        "elasticsan_api_version": elasticsan.API_VERSION,
        "compute_api_version": compute.API_VERSION,
        "admin_url": f"{endpoint}/_emulator",
        "state_dir": str(config.state_dir.resolve()),
    }
    try:
        result = ready(info)
        if result is not None:
            await result
        log.info("emulator listening on %s", endpoint)
        await stop.wait()
    finally:
        await runner.cleanup()
        emulator.store.save()
        if access is not None:
            access.close()
