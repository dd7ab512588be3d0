"""Long-running operations, shaped the way azure-mgmt-core's ARMPolling consumes them.

A write answers 201/202 (200 for a PUT on an existing resource) with ``Azure-AsyncOperation``
(a status URL: ``{"status": "InProgress" | "Succeeded" | "Failed", "error"?}``), ``Location``
(202 while running; then 200 with the resource, or 204 after a delete) and ``Retry-After``.
ARMPolling prefers ``Azure-AsyncOperation`` and, for PUT/PATCH, reads the result with a final
GET on the resource. Operations finish lazily: any request first settles those that are due.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from elasticsan_snapshotter.emulator.config import EmulatorConfig, format_seconds
from elasticsan_snapshotter.emulator.errors import ArmError, json_response
from elasticsan_snapshotter.emulator.faults import FaultRule
from elasticsan_snapshotter.emulator.resources import normalize_location, now_iso
from elasticsan_snapshotter.emulator.state import Record, Store

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

KEEP_FINISHED = 20_000
"""Finished operations kept for late polls; the oldest go first."""


class Operations:
    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self.keep_finished = KEEP_FINISHED
        # Ids of running operations, so that settling is not a scan of every operation kept.
        self._running = {op_id for op_id, op in store.operations.items() if op["status"] == IN_PROGRESS}

    def start(
        self,
        *,
        provider: str,
        api_version: str,
        location: str,
        action: str,
        resource: Record,
        fault: FaultRule | None,
        cascade: list[str] | None = None,
    ) -> Record:
        """Begin an operation on ``resource`` (already updated to its transitional state)."""
        now = time.time()
        duration = self.config.lro_seconds
        error: dict[str, str] | None = None
        if fault is not None and fault.action.startswith("lro-slow="):
            duration += fault.slow_seconds
        if fault is not None and fault.action == "lro-fail":
            error = {
                "code": "InternalServerError",
                "message": "The operation failed because of an injected fault.",
            }
        op_id = str(uuid.uuid4())
        op: Record = {
            "id": op_id,
            "provider": provider,
            "api_version": api_version,
            "location": normalize_location(location) or "global",
            "action": action,
            "resource": resource["id"].lower(),
            "cascade": cascade or [],
            "status": IN_PROGRESS,
            "start_time": now_iso(),
            "start_ts": now,
            "end_time": None,
            "done_at": now + duration,
            "error": error,
        }
        self.store.operations[op_id] = op
        self._running.add(op_id)
        resource["operation"] = op_id
        self.store.touch_operation(op_id)
        self.store.touch(resource["id"])
        return op

    def headers(self, op: Record, base_url: str) -> dict[str, str]:
        prefix = (
            f"{base_url}/subscriptions/{self.store.identity['subscription_id']}/providers/"
            f"{op['provider']}/locations/{op['location']}"
        )
        query = f"?api-version={op['api_version']}"
        return {
            "Azure-AsyncOperation": f"{prefix}/asyncoperations/{op['id']}{query}",
            "Location": f"{prefix}/operationresults/{op['id']}{query}",
            "Retry-After": format_seconds(self.config.lro_retry_after),
        }

    def settle(self) -> None:
        """Finish every operation whose time has come."""
        now = time.time()
        due = [
            op
            for op_id in self._running
            if (op := self.store.operations.get(op_id)) is not None and op["done_at"] <= now
        ]
        if not due:
            return
        for op in due:
            self._running.discard(op["id"])
            self._finish(op)
        self._prune()

    def _finish(self, op: Record) -> None:
        failed = op["error"] is not None
        op["status"] = FAILED if failed else SUCCEEDED
        op["end_time"] = now_iso()
        record = self.store.resources.get(op["resource"])
        if record is not None and record.get("operation") == op["id"]:
            record.pop("operation", None)
            if op["action"] == "delete" and not failed:
                self.store.remove(record["id"])
                for key in op["cascade"]:
                    self.store.remove(key)
            elif op["action"] == "delete":
                record["state"] = SUCCEEDED
            else:
                record["state"] = FAILED if failed else SUCCEEDED
            self.store.touch(record["id"])
        self.store.touch_operation(op["id"])

    def _prune(self) -> None:
        # A list first: deleting from the dict while iterating it would fail.
        extra = len(self.store.operations) - len(self._running) - self.keep_finished
        if extra <= 0:
            return
        extra += self.keep_finished // 10  # some headroom, so the sort is not paid on every finish
        finished = [op for op in self.store.operations.values() if op["status"] != IN_PROGRESS]
        finished.sort(key=lambda o: o["done_at"])
        for op in finished[:extra]:
            del self.store.operations[op["id"]]
            self.store.touch_operation(op["id"])

    def in_progress(self, record: Record) -> Record | None:
        op_id = record.get("operation")
        op = self.store.operations.get(op_id) if op_id else None
        return op if op is not None and op["status"] == IN_PROGRESS else None

    # HTTP ------------------------------------------------------------------------------

    def status_response(self, op_id: str, path: str) -> web.Response:
        op = self._lookup(op_id)
        body: dict[str, Any] = {
            "id": path,
            "name": op["id"],
            "status": op["status"],
            "startTime": op["start_time"],
        }
        if op["status"] == IN_PROGRESS:
            total = max(op["done_at"] - op["start_ts"], 1e-9)
            body["percentComplete"] = round(min(99.0, 100.0 * (1 - (op["done_at"] - time.time()) / total)), 1)
            headers = {"Retry-After": format_seconds(self.config.lro_retry_after)}
            return json_response(body, headers=headers)
        body["endTime"] = op["end_time"]
        body["percentComplete"] = 100.0
        if op["error"] is not None:
            body["error"] = op["error"]
        return json_response(body)

    def result_response(
        self, op_id: str, base_url: str, render: Callable[[Record], dict[str, Any]]
    ) -> web.Response:
        op = self._lookup(op_id)
        if op["status"] == IN_PROGRESS:
            return web.Response(status=202, headers=self.headers(op, base_url) | {"Content-Length": "0"})
        if op["error"] is not None:
            raise ArmError(500, op["error"]["code"], op["error"]["message"])
        if op["action"] == "delete":
            return web.Response(status=204)
        record = self.store.resources.get(op["resource"])
        if record is None:
            return web.Response(status=204)
        return json_response(render(record))

    def _lookup(self, op_id: str) -> Record:
        op = self.store.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        return op
