"""SDK exceptions become domain errors by ARM error code and HTTP status, never by message text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.identity import CredentialUnavailableError
from azure.mgmt.core.exceptions import ARMErrorFormat

from elasticsan_snapshotter.azure.errors import (
    classify,
    is_ambiguous_quota,
    is_ambiguous_refusal,
    quota_error,
    refusal_error,
    request_id,
    retry_after,
    translate,
)
from elasticsan_snapshotter.domain.decisions import VolumeHasSnapshots
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    CapacityExhausted,
    Forbidden,
    InvalidRequest,
    LimitReached,
    NotFound,
    SnapshotterError,
    Throttled,
    Transient,
    Unauthenticated,
)

pytestmark = pytest.mark.unit


class FakeResponse:
    """Just what HttpResponseError reads from a response: status, reason, headers, body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.request = HttpRequest("PUT", "https://management.azure.com/subscriptions/s/x")
        self.status_code = status
        self.reason = "Reason"
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self._text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""

    def text(self, encoding: str | None = None) -> str:
        return self._text


def arm_error(
    status: int,
    code: str | None,
    message: str = "something happened",
    headers: dict[str, str] | None = None,
    cls: type[HttpResponseError] = HttpResponseError,
) -> HttpResponseError:
    body = {"error": {"code": code, "message": message}} if code else None
    return cls(response=FakeResponse(status, body, headers), error_format=ARMErrorFormat)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "ResourceNotFound", NotFound),
        (404, "ParentResourceNotFound", NotFound),
        (404, None, NotFound),
        (400, "InvalidParameter", InvalidRequest),
        (400, "InvalidResourceName", InvalidRequest),
        (400, "LocationRequired", InvalidRequest),
        (400, None, InvalidRequest),
        (405, "MethodNotAllowed", InvalidRequest),
        (409, "InvalidResourceLocation", InvalidRequest),
        (409, "OperationNotAllowed", InvalidRequest),
        (409, "PropertyChangeNotAllowed", AlreadyExists),
        (409, "ResourceExists", AlreadyExists),
        (409, "AnotherOperationInProgress", Transient),
        (409, "Conflict", Transient),
        (409, None, Transient),
        (409, "VolumeHasSnapshots", VolumeHasSnapshots),
        (409, "CapacityExhausted", CapacityExhausted),
        (409, "LimitReached", LimitReached),
        (403, "AuthorizationFailed", Forbidden),
        (403, None, Forbidden),
        (429, "TooManyRequests", Throttled),
        (429, None, Throttled),
        (408, None, Transient),
        (500, "InternalServerError", Transient),
        (502, None, Transient),
        (503, "ServiceUnavailable", Transient),
        (504, None, Transient),
    ],
)
def test_status_and_code_decide_the_class(
    status: int, code: str | None, expected: type[SnapshotterError]
) -> None:
    error = translate(arm_error(status, code))
    assert type(error) is expected
    assert error.retryable is expected.retryable


def test_codes_compare_case_insensitively() -> None:
    assert type(translate(arm_error(409, "anotheroperationinprogress"))) is Transient
    assert type(translate(arm_error(404, "RESOURCENOTFOUND"))) is NotFound


@pytest.mark.parametrize(
    "message",
    ["The resource was not found.", "Too many requests", "capacity exhausted", "already exists"],
)
def test_message_text_never_changes_the_class(message: str) -> None:
    assert type(translate(arm_error(400, "InvalidParameter", message))) is InvalidRequest
    assert type(translate(arm_error(400, None, message))) is InvalidRequest


def test_a_failed_long_running_operation_is_judged_by_its_code() -> None:
    # The last poll answered 200 with {"status": "Failed", "error": {...}}.
    body = {"status": "Failed", "error": {"code": "CapacityExhausted", "message": "no room"}}
    exc = HttpResponseError(response=FakeResponse(200, body), error_format=ARMErrorFormat)
    assert type(translate(exc)) is CapacityExhausted


def test_a_failed_long_running_operation_without_a_known_code_is_transient() -> None:
    body = {"status": "Failed", "error": {"code": "SomethingNew", "message": "?"}}
    exc = HttpResponseError(response=FakeResponse(200, body), error_format=ARMErrorFormat)
    assert type(translate(exc)) is Transient


def test_sdk_subclasses_keep_their_meaning() -> None:
    assert type(translate(arm_error(404, "ResourceNotFound", cls=ResourceNotFoundError))) is NotFound
    assert type(translate(arm_error(409, "ResourceExists", cls=ResourceExistsError))) is AlreadyExists
    assert type(translate(arm_error(401, "InvalidAuthenticationToken", cls=ClientAuthenticationError))) is (
        Unauthenticated
    )


def test_credential_failures_are_retryable_not_an_objects_final_error() -> None:
    # A rotated secret or a refreshed federated token fixes them; no content should carry them.
    for exc in (
        CredentialUnavailableError("no identity configured"),
        ClientAuthenticationError("token request failed"),
        arm_error(401, None),
        arm_error(401, "ExpiredAuthenticationToken"),
    ):
        error = translate(exc)
        assert type(error) is Unauthenticated
        assert error.retryable
    assert type(translate(arm_error(403, "AuthorizationFailed"))) is Forbidden


@pytest.mark.parametrize(
    "exc",
    [
        ServiceRequestError("connection refused"),
        ServiceResponseError("connection reset"),
        ServiceRequestTimeoutError("timed out"),
        ConnectionResetError("reset"),
        TimeoutError(),
        HttpResponseError("no response at all"),
    ],
)
def test_transport_failures_are_transient(exc: BaseException) -> None:
    error = translate(exc)
    assert type(error) is Transient
    assert error.retryable


def test_throttled_carries_retry_after_and_request_id() -> None:
    exc = arm_error(
        429,
        "TooManyRequests",
        headers={"Retry-After": "17", "x-ms-request-id": "req-1", "x-ms-correlation-request-id": "corr-1"},
    )
    error = translate(exc, "create snapshot s1")
    assert isinstance(error, Throttled)
    assert error.retry_after == 17.0
    assert error.request_id == "req-1"
    assert "create snapshot s1" in error.message
    assert "429" in error.message
    assert "TooManyRequests" in error.message


def test_throttled_without_retry_after_uses_the_default_delay() -> None:
    error = translate(arm_error(429, "TooManyRequests"))
    assert error.retry_after == Throttled.default_retry_after


def test_final_errors_ignore_retry_after() -> None:
    error = translate(arm_error(400, "InvalidParameter", headers={"Retry-After": "5"}))
    assert error.retry_after is None
    assert error.final


def test_request_id_falls_back_to_the_correlation_id() -> None:
    assert request_id({"x-ms-correlation-request-id": "corr"}) == "corr"
    assert request_id({"x-ms-request-id": "req", "x-ms-correlation-request-id": "corr"}) == "req"
    assert request_id({}) is None
    assert request_id(None) is None
    assert translate(arm_error(404, None, headers={"x-ms-correlation-request-id": "c"})).request_id == "c"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"x-ms-retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}, 30.0),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert retry_after(headers, now=lambda: now) == expected


def test_domain_errors_pass_through_unchanged() -> None:
    original = NotFound("gone")
    assert translate(original) is original
    assert classify(original) is NotFound


def test_messages_do_not_contain_tokens_from_headers() -> None:
    exc = arm_error(403, "AuthorizationFailed", headers={"Authorization": "Bearer secret-token"})
    assert "secret-token" not in translate(exc).message


def test_quota_exceeded_is_a_limit_until_the_state_says_otherwise() -> None:
    exc = arm_error(409, "QuotaExceeded", headers={"x-ms-request-id": "q"})
    error = translate(exc)
    assert type(error) is LimitReached
    assert is_ambiguous_quota(exc)
    assert quota_error(error, at_count_limit=True) is error
    full = quota_error(error, at_count_limit=False)
    assert type(full) is CapacityExhausted
    assert full.request_id == "q"


def test_specific_codes_are_not_ambiguous() -> None:
    assert not is_ambiguous_quota(arm_error(409, "CapacityExhausted"))
    assert not is_ambiguous_quota(arm_error(409, "LimitReached"))
    assert not is_ambiguous_quota(None)


def test_operation_not_allowed_is_final_unless_the_source_is_not_ready() -> None:
    exc = arm_error(409, "OperationNotAllowed")
    error = translate(exc)
    assert type(error) is InvalidRequest
    assert is_ambiguous_refusal(exc)
    assert refusal_error(error, source_ready=True) is error
    assert type(refusal_error(error, source_ready=False)) is Transient
