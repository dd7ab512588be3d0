"""The one place where Azure SDK exceptions become domain errors.

Translation looks at the ARM error code first (``exc.error.code``; a failed
long-running operation carries its code in the status body while the HTTP status
of the last poll is 200), then at the HTTP status. Message text is never matched:
it is for people and changes without notice.

Elastic SAN documents no error codes of its own; the codes below are the ARM
conventions plus the ones the local emulator uses (``docs/emulator.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
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

REQUEST_ID_HEADERS = ("x-ms-request-id", "x-ms-correlation-request-id")

_ErrorClass = type[SnapshotterError]

# ARM error codes, compared case-insensitively. A code decides before the status does.
CODE_TABLE: Mapping[str, _ErrorClass] = {
    code.lower(): cls
    for cls, codes in (
        (VolumeHasSnapshots, ("VolumeHasSnapshots",)),
        (NotFound, ("ResourceNotFound", "ParentResourceNotFound", "NotFound", "ResourceGroupNotFound")),
        (
            AlreadyExists,
            # PropertyChangeNotAllowed: a PUT tried to give an existing resource another source.
            ("ResourceExists", "AlreadyExists", "ResourceAlreadyExists", "PropertyChangeNotAllowed"),
        ),
        (
            InvalidRequest,
            (
                "InvalidParameter",
                "InvalidResourceName",
                "InvalidRequestContent",
                "BadRequest",
                "LocationRequired",
                "LocationMismatch",
                "InvalidResourceLocation",
                "InvalidSize",
                "OperationNotAllowed",
            ),
        ),
        (Forbidden, ("AuthorizationFailed", "LinkedAuthorizationFailed", "Forbidden")),
        (
            Unauthenticated,
            (
                "InvalidAuthenticationToken",
                "InvalidAuthenticationTokenTenant",
                "AuthenticationFailed",
                "ExpiredAuthenticationToken",
            ),
        ),
        (
            CapacityExhausted,
            ("CapacityExhausted", "InsufficientCapacity", "ElasticSanCapacityExceeded", "NotEnoughCapacity"),
        ),
        (
            LimitReached,
            (
                "LimitReached",
                "SnapshotLimitReached",
                "SnapshotCountLimitExceeded",
                "MaxSnapshotsReached",
                "QuotaExceeded",
            ),
        ),
        (Throttled, ("TooManyRequests", "SubscriptionRequestsThrottled", "SnapshotRateLimitExceeded")),
        (
            Transient,
            (
                "AnotherOperationInProgress",
                "RetryableErrorDueToAnotherOperation",
                "OperationInProgress",
                "InternalServerError",
                "ServiceUnavailable",
                "GatewayTimeout",
            ),
        ),
    )
    for code in codes
}


def _by_status(status: int) -> _ErrorClass:
    if status == 404:
        return NotFound
    if status == 401:
        return Unauthenticated
    if status == 403:
        return Forbidden
    if status == 429:
        return Throttled
    # 409 without a known code: a conflict with the resource's current state, which passes.
    if status in (408, 409, 412) or status >= 500:
        return Transient
    if 400 <= status < 500:
        return InvalidRequest
    # A 2xx here is a long-running operation that failed without a code we know.
    return Transient


def request_id(headers: Mapping[str, str] | None) -> str | None:
    """The ARM request ID of a response, falling back to the correlation ID."""
    if not headers:
        return None
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(float(value) / 1000.0, 0.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


def _response_headers(exc: HttpResponseError) -> Mapping[str, str] | None:
    # The exception types its response loosely; every azure-core response has headers.
    headers: Mapping[str, str] | None = getattr(exc.response, "headers", None)
    return headers


def error_code(exc: BaseException) -> str | None:
    """The ARM error code an SDK exception carries, if any."""
    if isinstance(exc, HttpResponseError) and exc.error is not None and exc.error.code:
        return str(exc.error.code)
    return None


def _describe(exc: AzureError, code: str | None, what: str) -> str:
    if isinstance(exc, HttpResponseError) and exc.error is not None and exc.error.message:
        detail = str(exc.error.message)
    else:
        detail = exc.message if isinstance(exc.message, str) and exc.message else type(exc).__name__
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    prefix = f"{what}: " if what else ""
    tags = ", ".join(str(p) for p in (status, code) if p)
    return f"{prefix}{detail} ({tags})" if tags else f"{prefix}{detail}"


def classify(exc: BaseException) -> _ErrorClass:
    """The domain error class for an SDK or transport exception."""
    if isinstance(exc, SnapshotterError):
        return type(exc)
    if isinstance(exc, ClientAuthenticationError):
        return Unauthenticated
    code = error_code(exc)
    if code and code.lower() in CODE_TABLE:
        return CODE_TABLE[code.lower()]
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return _by_status(exc.status_code)
    # Connection refused or reset, TLS and DNS failures, timeouts, undecodable answers.
    return Transient


def translate(exc: BaseException, what: str = "") -> SnapshotterError:
    """A domain error for ``exc``, with the ARM request ID and, when throttled, the delay asked for.

    ``what`` names the operation for the message, e.g. ``"create snapshot rg/san/vg/snap-1"``.
    """
    if isinstance(exc, SnapshotterError):
        return exc
    cls = classify(exc)
    headers = _response_headers(exc) if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, AzureError):
        message = _describe(exc, error_code(exc), what)
    else:
        message = f"{what}: {type(exc).__name__}: {exc}" if what else f"{type(exc).__name__}: {exc}"
    delay = retry_after(headers) if cls in (Throttled, Transient) else None
    return cls(message, retry_after=delay, request_id=request_id(headers))


def unreadable_answer(
    exc: BaseException, status: int | None, what: str = "", req_id: str | None = None
) -> SnapshotterError | None:
    """A domain error for an answer the SDK could not parse, decided by its HTTP status.

    A plain-text 5xx (a proxy's error page, a failing server) makes the SDK raise a bare
    ``ValueError`` while reading it as an ARM error; by its status it is a passing failure.
    A success the SDK cannot read stays a bug (``None``).
    """
    if status is None or not isinstance(exc, ValueError):
        return None
    cls = _by_status(status) if status >= 400 else None
    if cls is None:
        return None
    prefix = f"{what}: " if what else ""
    message = f"{prefix}the service answered {status} with a body that is no ARM error ({type(exc).__name__})"
    return cls(message, request_id=req_id)


AMBIGUOUS_QUOTA_CODES = frozenset({"quotaexceeded"})
"""Codes that say a quota is exhausted without saying which: a count limit or the SAN's capacity."""


def is_ambiguous_quota(exc: BaseException | None) -> bool:
    code = error_code(exc) if exc is not None else None
    return code is not None and code.lower() in AMBIGUOUS_QUOTA_CODES


def quota_error(error: LimitReached, *, at_count_limit: bool) -> SnapshotterError:
    """An ambiguous quota answer, decided by state: at the count limit it is that limit, else the SAN is full."""
    if at_count_limit:
        return error
    return CapacityExhausted(error.message, request_id=error.request_id)


AMBIGUOUS_REFUSAL_CODES = frozenset({"operationnotallowed"})
"""Codes that refuse a create without saying whether the source is not ready yet or never usable."""


def is_ambiguous_refusal(exc: BaseException | None) -> bool:
    code = error_code(exc) if exc is not None else None
    return code is not None and code.lower() in AMBIGUOUS_REFUSAL_CODES


def refusal_error(error: InvalidRequest, *, source_ready: bool) -> SnapshotterError:
    """An ambiguous refusal, decided by state: final if the source is ready, else it passes."""
    if source_ready:
        return error
    return Transient(error.message, request_id=error.request_id)


TRANSLATED: tuple[type[BaseException], ...] = (AzureError, OSError, SnapshotterError)
"""What the adapter turns into domain errors (domain errors pass as they are); anything else is a bug."""

__all__ = [
    "AMBIGUOUS_QUOTA_CODES",
    "AMBIGUOUS_REFUSAL_CODES",
    "CODE_TABLE",
    "REQUEST_ID_HEADERS",
    "TRANSLATED",
    "classify",
    "error_code",
    "is_ambiguous_quota",
    "is_ambiguous_refusal",
    "quota_error",
    "refusal_error",
    "request_id",
    "retry_after",
    "translate",
    "unreadable_answer",
]
