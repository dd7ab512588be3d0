"""Kubernetes-native snapshots, restores and exports for Azure Elastic SAN volumes."""

__version__ = "0.1.0"

DRIVER_NAME = "elasticsan.snapshotter.dev"
"""The default driver name: VolumeSnapshotClass ``driver``, StorageClass ``provisioner``, CSI plugin name."""

__all__ = ["DRIVER_NAME", "__version__"]
