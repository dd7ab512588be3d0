"""The one error vocabulary of the project.

Every adapter translates what it meets into these classes at its edge (Azure
SDK exceptions in ``elasticsan_snapshotter.azure``, gRPC codes in
``elasticsan_snapshotter.csi``, Kopf retries and status in
``elasticsan_snapshotter.kubernetes``). Each class says whether it is *final*
(retrying the same request cannot help: report it to the user) or
*retryable* (try again, after ``retry_after`` seconds when known).
"""

from __future__ import annotations

from typing import ClassVar


class SnapshotterError(Exception):
    """Base of every error the core knows about."""

    reason: ClassVar[str] = "Error"
    """CamelCase reason, used for Kubernetes Events and metrics labels."""

    retryable: ClassVar[bool] = False
    default_retry_after: ClassVar[float | None] = None

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after
        self.request_id = request_id

    @property
    def final(self) -> bool:
        return not self.retryable

    def __str__(self) -> str:
        return self.message


class NotFound(SnapshotterError):
    """The resource does not exist."""

    reason = "NotFound"


class AlreadyExists(SnapshotterError):
    """A resource with this name exists but was made from a different source or with other settings."""

    reason = "AlreadyExists"


class InvalidRequest(SnapshotterError):
    """The request can never succeed as it stands: bad name, size, region, handle or spec."""

    reason = "InvalidRequest"


class Forbidden(SnapshotterError):
    """The identity lacks the Azure role (or Kubernetes permission) for this action."""

    reason = "Forbidden"


class Unauthenticated(SnapshotterError):
    """Credentials were refused even after logging in again (expired secret, revoked identity).

    Retryable: credentials get fixed outside the object (a rotated secret, a refreshed federated
    token), so no object records it as its own final error; the process reports it as a
    condition instead (``elasticsan_snapshotter.health``).
    """

    reason = "Unauthenticated"
    retryable = True
    default_retry_after = 30.0


class CapacityExhausted(SnapshotterError):
    """The Elastic SAN has no room left; retryable once someone grows the SAN or frees space."""

    reason = "CapacityExhausted"
    retryable = True
    default_retry_after = 60.0


class LimitReached(SnapshotterError):
    """A per-resource limit is reached (for example 200 snapshots per volume); clears when some are deleted."""

    reason = "LimitReached"
    retryable = True
    default_retry_after = 60.0


class Throttled(SnapshotterError):
    """Azure asked us to slow down (HTTP 429); ``retry_after`` holds its delay."""

    reason = "Throttled"
    retryable = True
    default_retry_after = 5.0


class Transient(SnapshotterError):
    """A temporary fault: server errors, timeouts, dropped connections, operations still in flight."""

    reason = "Transient"
    retryable = True
    default_retry_after = 5.0


MESSAGE_LIMIT = 1024
"""Longest message written to a status or an Event."""
QUOTE_LIMIT = 80
"""Longest value quoted inside a message; longer ones are cut and their length said."""


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message never carries a whole annotation."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({length} characters)"


def bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to ``limit`` characters, saying so."""
    if len(message) <= limit:
        return message
    return message[: limit - 25].rstrip() + f" ... ({len(message)} characters)"


__all__ = [
    "AlreadyExists",
    "CapacityExhausted",
    "Forbidden",
    "InvalidRequest",
    "LimitReached",
    "NotFound",
    "SnapshotterError",
    "Throttled",
    "Transient",
    "Unauthenticated",
    "bounded",
    "quote",
]
