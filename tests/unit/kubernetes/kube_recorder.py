"""Stand-ins for unit tests: ``KubeApi`` in memory (merge-patches, counts requests) and a seeded Azure."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, cast

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.errors import NotFound
from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.resources import Resource


def azure_with(volume: VolumeId, size_gib: int = 10) -> InMemoryAzure:
    """The in-memory Azure with ``volume`` (and its SAN and volume group) in it."""
    azure = InMemoryAzure()
    azure.add_elastic_san(volume.volume_group.san)
    azure.add_volume_group(volume.volume_group)
    azure.add_volume(volume, size_gib)
    return azure


def reconciler_parts(api: RecordingApi, volume: VolumeId, driver: str) -> dict[str, Any]:
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


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch to ``target`` in place (``None`` removes a key)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class RecordingApi:
    """Objects by (plural, namespace, name); every call is counted as (verb, plural, subresource)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.history: list[Body] = []
        """Every version stored, oldest first: what a watch would deliver, possibly late."""
        self._revision = 100

    def put(self, resource: Resource, body: Body) -> Body:
        """Store ``body`` as the API server would (a new resourceVersion); returns a copy."""
        meta = body["metadata"]
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        self.objects[(resource.plural, meta.get("namespace", ""), meta["name"])] = copy.deepcopy(body)
        self.history.append(copy.deepcopy(body))
        return copy.deepcopy(body)

    def count(self, verb: str, plural: str | None = None) -> int:
        return sum(n for (v, p, _), n in self.calls.items() if v == verb and plural in (None, p))

    async def get(self, resource: Resource, name: str, namespace: str = "") -> Body | None:
        self.calls[("get", resource.plural, "")] += 1
        found = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, resource: Resource, namespace: str = "", **_: Any) -> list[Body]:
        self.calls[("list", resource.plural, "")] += 1
        return [copy.deepcopy(b) for (p, _ns, _n), b in self.objects.items() if p == resource.plural]

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        subresource: str = "",
        **_: Any,
    ) -> Body:
        self.calls[("patch", resource.plural, subresource)] += 1
        found = self.objects.get((resource.plural, namespace, name))
        if found is None:
            raise NotFound(f"{resource.plural} {name}")
        updated = copy.deepcopy(found)
        merge_patch(updated, patch)
        return self.put(resource, updated)

    async def create(self, resource: Resource, body: Body, namespace: str = "") -> Body:
        self.calls[("create", resource.plural, "")] += 1
        return copy.deepcopy(body)
