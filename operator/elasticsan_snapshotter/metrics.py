"""Prometheus metrics of the whole process, defined in this one module.

All metrics live in ``REGISTRY`` (not the client library's global default), so
tests and embedders get exactly this process's series and nothing else;
``render()`` gives the text exposition format for a ``/metrics`` endpoint.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

NAMESPACE = "elasticsan_snapshotter"

REGISTRY = CollectorRegistry(auto_describe=True)

AZURE_CALLS = Counter(
    "azure_calls",
    "Azure Resource Manager operations, by operation and outcome (Success or the domain error reason).",
    ["operation", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

AZURE_CALL_DURATION = Histogram(
    "azure_call_duration_seconds",
    "Duration of Azure operations, long-running ones until they finish, retries included.",
    ["operation"],
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)

AZURE_THROTTLED_RESPONSES = Counter(
    "azure_throttled_responses",
    "HTTP 429 responses from Azure, including those the SDK retried transparently.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

AZURE_PACING_WAIT = Histogram(
    "azure_pacing_wait_seconds",
    "Time spent waiting for client-side pacing (write budget, per-volume snapshot pace).",
    ["limit"],
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.0, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0, 300.0),
)


def render() -> bytes:
    """All metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


__all__ = [
    "AZURE_CALLS",
    "AZURE_CALL_DURATION",
    "AZURE_PACING_WAIT",
    "AZURE_THROTTLED_RESPONSES",
    "NAMESPACE",
    "REGISTRY",
    "render",
]
