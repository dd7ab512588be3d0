"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
snapshot-controller) built from pinned upstream sources, for tests and the demo."""

from elasticsan_snapshotter.local_cluster.artifacts import Artifacts, ArtifactsError, discover
from elasticsan_snapshotter.local_cluster.cluster import (
    CONTEXT_NAME,
    ClusterError,
    LocalCluster,
    assert_is_local,
    free_port,
)

__all__ = [
    "CONTEXT_NAME",
    "Artifacts",
    "ArtifactsError",
    "ClusterError",
    "LocalCluster",
    "assert_is_local",
    "discover",
    "free_port",
]
