"""One ARM request as the resource handlers see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy, MultiMapping

from elasticsan_snapshotter.emulator.errors import ArmError
from elasticsan_snapshotter.emulator.faults import FaultRule
from elasticsan_snapshotter.emulator.resources import Route
from elasticsan_snapshotter.emulator.tokens import Principal


@dataclass
class Call:
    method: str
    path: str
    route: Route
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]
    body: Any
    principal: Principal
    base_url: str
    api_version: str
    fault: FaultRule | None

    def body_object(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return self.body


def get_dict(container: dict[str, Any], key: str, target: str) -> dict[str, Any]:
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidRequestContent", f"'{target}' must be a JSON object.", target=target)
    return value


def get_int(
    container: dict[str, Any], key: str, target: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArmError(400, "InvalidRequestContent", f"'{target}' must be an integer.", target=target)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ArmError(400, "InvalidParameter", f"'{target}' must be {bound}; got {value}.", target=target)
    return value
