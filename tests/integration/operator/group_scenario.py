"""Building blocks for group snapshot tests: labelled claims on Elastic SAN volumes, group objects, waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
from kubernetes.client.rest import ApiException
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, unique_name

from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

GROUPS, GROUPS_VERSION = "groupsnapshot.storage.k8s.io", "v1"
GROUP_DRIVER = "iscsi.csi.k8s.io"
BEING_CREATED = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-created"
MEMBER_HANDLE = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"
GIB = 2**30


class Groups:
    """The group objects of one test namespace, over the real API server."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.custom = kube.custom
        self.namespace = namespace

    # -- set-up --
    def classes(self, deletion_policy: str = "Delete", **parameters: str) -> tuple[str, str]:
        """A StorageClass of the operator's driver and a group class; returns their names."""
        storage_class, group_class = unique_name("esan"), unique_name("esan-group")
        self.kube.create_storage_class(storage_class)
        self.create_class(group_class, deletion_policy, **parameters)
        return storage_class, group_class

    def labelled_claims(
        self, source_volume: Callable[..., Any], storage_class: str, count: int, labels: dict[str, str]
    ) -> list[tuple[str, Any]]:
        """``count`` Elastic SAN volumes as static iSCSI PVs with Bound claims carrying ``labels``."""
        made = []
        for i in range(count):
            volume = source_volume(10)
            target = volume.storage_target
            pv = unique_name("esan-pv")
            self.kube.create_static_volume(
                pv,
                storage_class,
                iqn=target.target_iqn,
                portal=f"{target.target_portal_hostname}:{target.target_portal_port}",
            )
            claim = f"member-{i}"
            self.claim(claim, storage_class, labels, volume_name=pv)
            made.append((claim, volume))
        for claim, _ in made:
            self.kube.wait_claim_bound(self.namespace, claim)
        return made

    def claim(
        self, name: str, storage_class: str, labels: dict[str, str], *, volume_name: str | None = None
    ) -> None:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": storage_class,
        }
        if volume_name:
            spec["volumeName"] = volume_name
        self.kube.core.create_namespaced_persistent_volume_claim(
            self.namespace,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "labels": labels},
                "spec": spec,
            },
        )

    def create_class(self, name: str, deletion_policy: str = "Delete", **parameters: str) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUPS}/{GROUPS_VERSION}",
            "kind": "VolumeGroupSnapshotClass",
            "metadata": {"name": name},
            "driver": GROUP_DRIVER,
            "deletionPolicy": deletion_policy,
        }
        if parameters:
            body["parameters"] = parameters
        self.custom.create_cluster_custom_object(GROUPS, GROUPS_VERSION, "volumegroupsnapshotclasses", body)

    def create(
        self,
        name: str,
        group_class: str | None,
        labels: dict[str, str] | None = None,
        *,
        content: str | None = None,
    ) -> None:
        source: dict[str, Any] = (
            {"volumeGroupSnapshotContentName": content} if content else {"selector": {"matchLabels": labels}}
        )
        spec: dict[str, Any] = {"source": source}
        if group_class:
            spec["volumeGroupSnapshotClassName"] = group_class
        self.custom.create_namespaced_custom_object(
            GROUPS,
            GROUPS_VERSION,
            self.namespace,
            "volumegroupsnapshots",
            {
                "apiVersion": f"{GROUPS}/{GROUPS_VERSION}",
                "kind": "VolumeGroupSnapshot",
                "metadata": {"name": name},
                "spec": spec,
            },
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUPS, GROUPS_VERSION, self.namespace, "volumegroupsnapshots", name
        )

    # -- reads --
    def get(self, name: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.custom.get_namespaced_custom_object(
                GROUPS, GROUPS_VERSION, self.namespace, "volumegroupsnapshots", name
            )
        )

    def content(self, name: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.custom.get_cluster_custom_object(
                GROUPS, GROUPS_VERSION, "volumegroupsnapshotcontents", name
            )
        )

    def content_of(self, name: str) -> dict[str, Any]:
        vgs = self.get(name) or {}
        bound = (vgs.get("status") or {}).get("boundVolumeGroupSnapshotContentName")
        found = self.content(bound) if bound else None
        assert found is not None, f"VolumeGroupSnapshot {name} is bound to no content"
        return found

    def wait_ready(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            vgs = self.get(name)
            return vgs if vgs and (vgs.get("status") or {}).get("readyToUse") else None

        return wait_for(f"VolumeGroupSnapshot {self.namespace}/{name} to be ready", ready, timeout)

    def wait_error(self, name: str, containing: str = "", timeout: float = 90.0) -> str:
        def error() -> str | None:
            vgs = self.get(name) or {}
            message: str | None = ((vgs.get("status") or {}).get("error") or {}).get("message")
            return message if message and containing in message else None

        return wait_for(
            f"an error {containing!r} on VolumeGroupSnapshot {self.namespace}/{name}", error, timeout
        )

    def members(self, name: str) -> list[dict[str, Any]]:
        """The member VolumeSnapshots snapshot-controller made for the group (owned by it)."""
        vgs = self.get(name) or {}
        uid = (vgs.get("metadata") or {}).get("uid")
        listed = self.custom.list_namespaced_custom_object(
            "snapshot.storage.k8s.io", "v1", self.namespace, "volumesnapshots"
        )["items"]
        return [
            vs
            for vs in listed
            if any(ref.get("uid") == uid for ref in vs["metadata"].get("ownerReferences") or [])
        ]

    def wait_members_ready(self, name: str, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            found = self.members(name)
            done = len(found) == count and all((vs.get("status") or {}).get("readyToUse") for vs in found)
            return found if done else None

        return wait_for(f"{count} member VolumeSnapshots of {name} to be ready", ready, timeout)


def exposed_metrics(operator: OperatorProcess) -> dict[str, float]:
    """The operator's /metrics samples by name (with labels)."""
    return {
        name: float(value)
        for name, _, value in (
            ln.rpartition(" ") for ln in operator.metrics().splitlines() if ln and ln[0] != "#"
        )
    }


def _or_none(read: Callable[[], Any]) -> dict[str, Any] | None:
    """The object ``read`` returns, or None when the API server says 404."""
    try:
        found: dict[str, Any] = read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def group_snapshots(esan: ElasticSanMgmtClient, prefix: str = "group-") -> list[Any]:
    """Every Elastic SAN snapshot in the test volume group whose name starts with ``prefix``."""
    return [
        s
        for s in esan.volume_snapshots.list_by_volume_group(RESOURCE_GROUP, SAN, VOLUME_GROUP)
        if s.name.startswith(prefix)
    ]


def compact(snapshot_name: str) -> str:
    """A snapshot handle without its subscription (the configured one is meant); still read as input."""
    return f"{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#{snapshot_name}"


def snapshot_handle(snapshot: Any) -> str:
    """The handle the operator writes for an Azure snapshot: its subscription first, as it fits."""
    return f"{snapshot.id.split('/')[2]}#{compact(snapshot.name)}"
