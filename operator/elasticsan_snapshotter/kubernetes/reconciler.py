"""What every reconciler of the operator works with."""

from __future__ import annotations

from dataclasses import dataclass

from elasticsan_snapshotter.domain.ports import AzurePort
from elasticsan_snapshotter.kubernetes.api import KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder


@dataclass(kw_only=True, eq=False)
class Reconciler:
    """The shared dependencies; each reconciler adds the stores it reads."""

    driver_name: str
    subscription: str
    api: KubeApi
    azure: AzurePort
    recorder: EventRecorder
