"""Whether the process's credentials work, as a condition that sets and clears itself.

One refused call is not a condition: tokens expire and are fetched again. After
``LIMIT`` refusals in a row (each already after a fresh login) the backend's
credentials count as failing: a Warning in the log, the gauge
``credentials_failing{backend}`` at 1 and the readiness probe failing. The first call
that works again clears all three.
"""

from __future__ import annotations

import logging
import threading

from elasticsan_snapshotter import metrics

logger = logging.getLogger(__name__)

LIMIT = 3
AZURE = "azure"
KUBERNETES = "kubernetes"


class CredentialHealth:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._refusals: dict[str, int] = {}
        self._messages: dict[str, str] = {}
        self._lock = threading.Lock()

    def refused(self, backend: str, message: str) -> None:
        with self._lock:
            count = self._refusals.get(backend, 0) + 1
            self._refusals[backend] = count
            if count == self.limit:
                self._messages[backend] = message
                metrics.CREDENTIALS_FAILING.labels(backend).set(1)
                logger.warning(
                    "%s credentials refused %d times in a row, after logging in again each time: %s",
                    backend,
                    count,
                    message,
                )

    def worked(self, backend: str) -> None:
        with self._lock:
            if not self._refusals.pop(backend, 0):
                return
            if self._messages.pop(backend, None) is not None:
                metrics.CREDENTIALS_FAILING.labels(backend).set(0)
                logger.info("%s credentials work again", backend)

    def failing(self) -> dict[str, str]:
        """Backends whose credentials count as failing, with the last refusal."""
        with self._lock:
            return dict(self._messages)


CREDENTIALS = CredentialHealth()
"""The process's one record (the adapters report to it; the readiness probe reads it)."""

__all__ = ["AZURE", "CREDENTIALS", "KUBERNETES", "LIMIT", "CredentialHealth"]
