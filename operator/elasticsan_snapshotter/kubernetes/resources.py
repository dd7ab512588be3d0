"""Names of the Kubernetes resources, annotations and finalizers the operator uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from elasticsan_snapshotter import DRIVER_NAME


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, name: str = "", namespace: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
OUR_GROUP = DRIVER_NAME

VOLUME_SNAPSHOT = Resource(SNAPSHOT_GROUP, "v1", "volumesnapshots", "VolumeSnapshot", True)
VOLUME_SNAPSHOT_CONTENT = Resource(
    SNAPSHOT_GROUP, "v1", "volumesnapshotcontents", "VolumeSnapshotContent", False
)
VOLUME_SNAPSHOT_CLASS = Resource(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False)
PERSISTENT_VOLUME = Resource("", "v1", "persistentvolumes", "PersistentVolume", False)
PERSISTENT_VOLUME_CLAIM = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
STORAGE_CLASS = Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
EVENT = Resource("", "v1", "events", "Event", True)
POD = Resource("", "v1", "pods", "Pod", True)
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
GROUP_SNAPSHOT_GROUP = "groupsnapshot.storage.k8s.io"
VOLUME_GROUP_SNAPSHOT = Resource(
    GROUP_SNAPSHOT_GROUP, "v1", "volumegroupsnapshots", "VolumeGroupSnapshot", True
)
VOLUME_GROUP_SNAPSHOT_CONTENT = Resource(
    GROUP_SNAPSHOT_GROUP, "v1", "volumegroupsnapshotcontents", "VolumeGroupSnapshotContent", False
)
VOLUME_GROUP_SNAPSHOT_CLASS = Resource(
    GROUP_SNAPSHOT_GROUP, "v1", "volumegroupsnapshotclasses", "VolumeGroupSnapshotClass", False
)
SNAPSHOT_EXPORT = Resource(
    OUR_GROUP, "v1alpha1", "elasticsansnapshotexports", "ElasticSanSnapshotExport", True
)
SNAPSHOT_SCHEDULE = Resource(
    OUR_GROUP, "v1alpha1", "elasticsansnapshotschedules", "ElasticSanSnapshotSchedule", True
)

# The csi-snapshotter contract (external-snapshotter pkg/utils/util.go).
ANN_BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
ANN_BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
ANN_ALLOW_VOLUME_MODE_CHANGE = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
FIN_CONTENT_BOUND = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"

# The group snapshotter contract (external-snapshotter pkg/utils/util.go).
ANN_GROUP_BEING_CREATED = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-created"
ANN_GROUP_BEING_DELETED = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-deleted"
ANN_GROUP_MEMBER_HANDLE = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"
"""On a member VolumeSnapshotContent: the handle of the group it belongs to."""
FIN_GROUP_CONTENT_BOUND = "groupsnapshot.storage.kubernetes.io/volumegroupsnapshotcontent-bound-protection"

# The provisioner contract (kube-controller-manager, sig-storage-lib-external-provisioner).
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_STORAGE_PROVISIONER_BETA = "volume.beta.kubernetes.io/storage-provisioner"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"

# Our own.
ANN_VOLUME_ID = f"{DRIVER_NAME}/volume-id"
FIN_VOLUME = f"{DRIVER_NAME}/volume-protection"
FIN_EXPORT_SOURCE = f"{DRIVER_NAME}/export-source-protection"
FIN_CLAIM_PROVISIONING = f"{DRIVER_NAME}/provisioning-protection"
"""On a claim from just before its Azure volume is created until its PV exists."""
ANN_PROVISIONING_VOLUME = f"{DRIVER_NAME}/provisioning-volume-id"
"""On a claim being provisioned: the ARM ID of the volume made for it."""
ANN_CONTENT_MADE = f"{DRIVER_NAME}/made-by-driver"
"""On a dynamic VolumeSnapshotContent the operator made ahead of snapshot-controller (content_making.py)."""
ANN_GROUP_CONSISTENCY = f"{DRIVER_NAME}/consistency"
"""On a VolumeGroupSnapshotContent: the consistency level the cut achieved."""
ANN_GROUP_CUT_WINDOW = f"{DRIVER_NAME}/cut-window-seconds"
"""On a VolumeGroupSnapshotContent: seconds from the first member's accepted PUT to the last one's."""
ANN_GROUP_FREEZE_LEASE = f"{DRIVER_NAME}/freeze-lease"
"""On a VolumeGroupSnapshotContent while a freeze may be held: the lease, its step and its nodes (JSON)."""
ANN_GROUP_FREEZE_RETRY = f"{DRIVER_NAME}/freeze-retry"
"""On a VolumeGroupSnapshotContent whose freezing attempt failed: attempts so far, and when to try again (JSON)."""
ANN_GROUP_FREEZE_WINDOW = f"{DRIVER_NAME}/freeze-window-seconds"
"""On a VolumeGroupSnapshotContent cut under a freeze: seconds from the first freeze to the last thaw."""

ISCSI_DRIVER = "iscsi.csi.k8s.io"
