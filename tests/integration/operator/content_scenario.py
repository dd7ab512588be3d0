"""Volume contents through the node stand-in: random files written and synced, claims mounted, checksums."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_scenario import Kube

from elasticsan_snapshotter.local_cluster.node import Mount, NodeStandIn, reflink_unavailable
from node_support import checked_node

MIB = 2**20


@contextlib.contextmanager
def reflink_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A scratch reflink (XFS) file system, or None where none can be made here."""
    if reflink_unavailable() is not None:
        yield None
        return
    with checked_node(None, tmp_path_factory.mktemp("unused-kubelet")) as stand_in:
        yield stand_in.reflink_directory()


def write_files(mount: Mount, names: list[str]) -> dict[str, str]:
    """Random files, synced to the volume; returns their checksums."""
    return {name: mount.write(name, os.urandom(MIB)) for name in names}


def checksums(mount: Mount, names: list[str]) -> dict[str, str]:
    return {name: mount.sha256(name) for name in names}


def mount_claim(node: NodeStandIn, kube: Kube, namespace: str, claim: str) -> Mount:
    """Mount a Bound claim's PV on the node, as kubelet would for a pod of that namespace."""
    pvc = kube.wait_claim_bound(namespace, claim)
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    return node.publish(pv.metadata.name, pv.spec.csi.volume_attributes, pod_uid=f"pod-{namespace}-{claim}")
