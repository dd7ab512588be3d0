"""Reconciler parts for unit tests: the in-memory API (``tests/kube_stand_in.py``) and a seeded Azure."""

from __future__ import annotations

from typing import Any, cast

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.kubernetes.api import KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from kube_stand_in import KubeStandIn, merge_patch


def azure_with(volume: VolumeId, size_gib: int = 10) -> InMemoryAzure:
    """The in-memory Azure with ``volume`` (and its SAN and volume group) in it."""
    azure = InMemoryAzure()
    azure.add_elastic_san(volume.volume_group.san)
    azure.add_volume_group(volume.volume_group)
    azure.add_volume(volume, size_gib)
    return azure


def reconciler_parts(api: KubeStandIn, volume: VolumeId, driver: str) -> dict[str, Any]:
    """What every reconciler is built with, over ``api`` and an Azure holding ``volume``."""
    azure = azure_with(volume)
    kube = cast(KubeApi, api)
    return {
        "driver_name": driver,
        "subscription": volume.volume_group.san.subscription,
        "api": kube,
        "azure": azure,
        "recorder": EventRecorder(kube),
        "index": SanIndex(azure, [volume.volume_group.san]),
    }


RecordingApi = KubeStandIn
"""The one in-memory API of the unit tests, by the name these tests know it by."""

__all__ = ["RecordingApi", "azure_with", "merge_patch", "reconciler_parts"]
