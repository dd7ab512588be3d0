"""Building blocks for schedule tests: the CRD, schedule objects as users write them, and what they made."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from export_scenario import REPO_ROOT, create_ours, get_ours
from kubernetes import client as k8s
from operator_scenario import GROUP as SNAPSHOT_GROUP
from operator_scenario import VERSION as SNAPSHOT_VERSION

from waiting import wait_for

SCHEDULE_CRD = REPO_ROOT / "crds" / "elasticsansnapshotschedules.yaml"
GROUP, VERSION, PLURAL = "elasticsan.snapshotter.dev", "v1alpha1", "elasticsansnapshotschedules"
KIND = "ElasticSanSnapshotSchedule"
LABEL_UID = "elasticsan.snapshotter.dev/schedule-uid"
ANN_TIME = "elasticsan.snapshotter.dev/scheduled-time"

MINIMUM_INTERVAL = "5"
WINDOW = "30"
"""The operator's lowered minimum @every interval and the snapshot window, both in seconds.

Seven snapshots per 30 s (not 5 min) lets @every 5s fit the limits, in the emulator as in the
operator's limiter and arithmetic.
"""


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Schedules:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.custom = k8s.CustomObjectsApi(api)

    def create(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return create_ours(self.custom, PLURAL, KIND, namespace, name, spec)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_ours(self.custom, PLURAL, namespace, name)

    def patch(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(((self.get(namespace, name) or {}).get("status")) or {})

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
        conditions = self.status(namespace, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), None)

    def wait_condition_true(
        self, namespace: str, name: str, kind: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The schedule's condition ``kind`` once its status is True."""

        def true() -> dict[str, Any] | None:
            found = self.condition(namespace, name, kind)
            return found if found and found["status"] == "True" else None

        found: dict[str, Any] = wait_for(f"{kind} on {namespace}/{name}", true, timeout=timeout)
        return found

    def made(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """VolumeSnapshots the schedule with this UID made (those being deleted excluded)."""
        found = self.custom.list_namespaced_custom_object(
            SNAPSHOT_GROUP,
            SNAPSHOT_VERSION,
            namespace,
            "volumesnapshots",
            label_selector=f"{LABEL_UID}={uid}",
        )
        return [vs for vs in found["items"] if not vs["metadata"].get("deletionTimestamp")]

    def ready(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        return [vs for vs in self.made(namespace, uid) if (vs.get("status") or {}).get("readyToUse")]


def ticks_of(snapshots: list[dict[str, Any]]) -> list[str]:
    return sorted(vs["metadata"]["annotations"][ANN_TIME] for vs in snapshots)
