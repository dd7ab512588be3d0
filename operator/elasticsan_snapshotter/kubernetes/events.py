"""Kubernetes Events, each emitted once per change.

A reconcile loop meets the same condition many times; users want to read it
once. The recorder remembers the last (reason, message) per object and type
and skips repeats, as external-snapshotter's helpers do.
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.resources import EVENT

logger = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "elasticsan-snapshotter"
_REMEMBERED = 50_000


class EventRecorder:
    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._last: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._instance = socket.gethostname()

    async def record(self, obj: Body, event_type: str, reason: str, message: str) -> bool:
        """Post an Event about ``obj`` unless the same one was the last posted for it."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid") or meta.get("name")), event_type)
        if self._last.get(key) == (reason, message):
            return False
        self._last[key] = (reason, message)
        self._last.move_to_end(key)
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)
        log = logger.warning if event_type == WARNING else logger.info
        log("%s %s/%s: %s: %s", obj.get("kind"), meta.get("namespace", ""), meta.get("name"), reason, message)
        try:
            await self._api.create(
                EVENT, self._event(obj, event_type, reason, message), meta.get("namespace") or "default"
            )
        except SnapshotterError as exc:
            # Events are best effort; the log line above already carries the message.
            logger.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc)
            self._last.pop(key, None)
            return False
        return True

    async def error(self, obj: Body, error: SnapshotterError) -> bool:
        return await self.record(obj, WARNING, error.reason, str(error))

    def forget(self, uid: str) -> None:
        for event_type in (NORMAL, WARNING):
            self._last.pop((uid, event_type), None)

    def _event(self, obj: Body, event_type: str, reason: str, message: str) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        involved = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if meta.get("namespace"):
            involved["namespace"] = meta["namespace"]
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name')}.",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": involved,
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
