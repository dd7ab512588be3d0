"""Azure adapters of the port: the real one over the Azure SDKs and an in-memory fake for tests.

``ElasticSanAzure`` (``azure.client``) talks to Azure Resource Manager through the
asynchronous SDKs; ``InMemoryAzure`` (``azure.fake``) keeps state in memory. The
SDK-backed names are loaded on first use, so importing this package, its
configuration or the fake never pulls the Azure SDK in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from elasticsan_snapshotter.azure.config import AzureConfig, PacingConfig, RetryConfig
from elasticsan_snapshotter.azure.pacing import Pacing

if TYPE_CHECKING:
    from elasticsan_snapshotter.azure.client import ElasticSanAzure
    from elasticsan_snapshotter.azure.credentials import build_credential

_LAZY = {
    "ElasticSanAzure": "elasticsan_snapshotter.azure.client",
    "build_credential": "elasticsan_snapshotter.azure.credentials",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["AzureConfig", "ElasticSanAzure", "Pacing", "PacingConfig", "RetryConfig", "build_credential"]
