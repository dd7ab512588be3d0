"""Injected faults: throttling, server errors, dropped connections, slow or failed LROs.

Spec string (comma-separated items)::

    latency:200                         extra latency in ms for every ARM request
    METHOD:KIND:ACTION:PROBABILITY[:COUNT]

METHOD is get/put/patch/delete/post or ``*``; KIND is a resource kind as the counters name
it (elasticSans, volumeGroups, volumes, volumeSnapshots, diskSnapshots, operations, ...) or
``*``; ACTION is an HTTP status (the request is answered with an ARM error and not applied),
``drop`` (connection closed before the request is applied), ``drop-after`` (applied, then the
connection is closed without an answer), ``lro-fail`` (accepted, the long-running operation
ends Failed) or ``lro-slow=SECONDS`` (accepted, the operation takes that much longer).
COUNT limits how often the rule fires. Draws come from one generator seeded with
``--fault-seed``, so a run with the same requests injects the same faults.

A JSON file holds ``{"latency_ms": N, "rules": [{"method", "kind", "action", "probability",
"count"?, "retry_after"?}]}``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_METHODS = {"get", "put", "patch", "delete", "post", "*"}


@dataclass
class FaultRule:
    method: str
    kind: str
    action: str
    probability: float
    count: int | None = None
    retry_after: int | None = None
    fired: int = 0

    def matches(self, method: str, kind: str) -> bool:
        return self.method in ("*", method.lower()) and self.kind in ("*", kind)

    @property
    def status(self) -> int | None:
        return int(self.action) if self.action.isdigit() else None

    @property
    def slow_seconds(self) -> float:
        _, _, value = self.action.partition("=")
        return float(value)


@dataclass
class FaultPlan:
    latency_ms: int = 0
    rules: list[FaultRule] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "rules": [asdict(r) for r in self.rules or []]}


def _validate(rule: FaultRule) -> FaultRule:
    if rule.method not in _METHODS:
        raise ValueError(f"fault rule: unknown method {rule.method!r}")
    action = rule.action
    ok = (
        (action.isdigit() and 400 <= int(action) <= 599)
        or action in ("drop", "drop-after", "lro-fail")
        or action.startswith("lro-slow=")
    )
    if not ok:
        raise ValueError(f"fault rule: unknown action {action!r}")
    if action.startswith("lro-slow="):
        rule.slow_seconds  # noqa: B018 - raises ValueError on a malformed number
    if not 0.0 <= rule.probability <= 1.0:
        raise ValueError(f"fault rule: probability {rule.probability} is not within 0..1")
    return rule


def parse_spec(spec: str) -> FaultPlan:
    """Parse a spec string, or load the JSON file it names."""
    spec = spec.strip()
    if not spec:
        return FaultPlan(rules=[])
    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        return parse_json(json.loads(path.read_text(encoding="utf-8")))
    plan = FaultPlan(rules=[])
    rules: list[FaultRule] = []
    for item in spec.split(","):
        parts = [p.strip() for p in item.strip().split(":")]
        if parts[0].lower() == "latency" and len(parts) == 2:
            plan.latency_ms = int(parts[1])
            continue
        if len(parts) not in (4, 5):
            raise ValueError(f"fault spec item {item!r}: expected METHOD:KIND:ACTION:PROBABILITY[:COUNT]")
        count = int(parts[4]) if len(parts) == 5 else None
        rules.append(_validate(FaultRule(parts[0].lower(), parts[1], parts[2], float(parts[3]), count)))
    plan.rules = rules
    return plan


def parse_json(document: Any) -> FaultPlan:
    if not isinstance(document, dict):
        raise ValueError("fault document must be a JSON object")
    rules = [
        _validate(
            FaultRule(
                method=str(item.get("method", "*")).lower(),
                kind=str(item.get("kind", "*")),
                action=str(item["action"]),
                probability=float(item.get("probability", 1.0)),
                count=None if item.get("count") is None else int(item["count"]),
                retry_after=None if item.get("retry_after") is None else int(item["retry_after"]),
            )
        )
        for item in document.get("rules", [])
    ]
    return FaultPlan(latency_ms=int(document.get("latency_ms", 0)), rules=rules)


class FaultInjector:
    def __init__(self, plan: FaultPlan, seed: int) -> None:
        self.plan = plan
        self._random = random.Random(seed)

    def replace(self, plan: FaultPlan, seed: int | None = None) -> None:
        """A new plan; with ``seed`` the draws also start afresh (the same faults for the same requests)."""
        self.plan = plan
        if seed is not None:
            self._random = random.Random(seed)

    def decide(self, method: str, kind: str) -> FaultRule | None:
        """The rule that fires for this request, if any (at most one per request)."""
        for rule in self.plan.rules or []:
            if not rule.matches(method, kind):
                continue
            if rule.count is not None and rule.fired >= rule.count:
                continue
            if rule.probability >= 1.0 or self._random.random() < rule.probability:
                rule.fired += 1
                return rule
        return None
