"""API server answers become domain errors by status and Status.reason, never by message text."""

from __future__ import annotations

import json

import pytest

from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    SnapshotterError,
    Throttled,
    Transient,
)
from elasticsan_snapshotter.kubernetes.api import Conflict, _translate


def status(reason: str, message: str = "m") -> str:
    return json.dumps({"kind": "Status", "reason": reason, "message": message})


@pytest.mark.parametrize(
    ("code", "body", "method", "expected"),
    [
        (404, status("NotFound"), "GET", NotFound),
        (409, status("AlreadyExists"), "POST", AlreadyExists),
        (409, status("Conflict", "AlreadyExists appears only in this message"), "PATCH", Conflict),
        (403, status("Forbidden"), "PATCH", Forbidden),
        (422, status("Invalid"), "POST", InvalidRequest),
        (400, status("BadRequest"), "POST", InvalidRequest),
        (400, status("BadRequest"), "PATCH", InvalidRequest),
        (500, "not json", "GET", Transient),
        (503, status("ServiceUnavailable"), "GET", Transient),
    ],
)
def test_translation(code: int, body: str, method: str, expected: type[SnapshotterError]) -> None:
    error = _translate(code, body, method, "/api/v1/x", None)
    assert type(error) is expected


def test_throttling_carries_retry_after() -> None:
    error = _translate(429, status("TooManyRequests"), "GET", "/api/v1/x", "7")
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0
    assert error.retryable


def test_a_json_patch_that_no_longer_applies_is_a_conflict_and_other_422s_are_not() -> None:
    # What kube-apiserver (apiserver/pkg/endpoints/handlers/patch.go) answers when a JSON patch's
    # `test` fails: NewGenericServerResponse(422), no causes, the patch library's reason dropped.
    bare = json.dumps(
        {
            "kind": "Status",
            "code": 422,
            "reason": "Invalid",
            "message": "the server rejected our request due to an error in our request",
            "details": {},
        }
    )
    invalid_result = json.dumps(
        {
            "kind": "Status",
            "code": 422,
            "reason": "Invalid",
            "message": "x is invalid",
            "details": {"causes": [{"reason": "FieldValueInvalid", "field": "spec.x", "message": "bad"}]},
        }
    )
    assert type(_translate(422, bare, "PATCH", "/x", None, json_patch=True)) is Conflict
    assert type(_translate(422, bare, "PATCH", "/x", None)) is InvalidRequest
    assert type(_translate(422, invalid_result, "PATCH", "/x", None, json_patch=True)) is InvalidRequest
