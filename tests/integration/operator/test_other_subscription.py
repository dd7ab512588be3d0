"""A snapshot handle stored by one cluster restores through an operator configured for another subscription.

This is the Velero path across clusters: the backup keeps the content's ``snapshotHandle``; the
restoring cluster's operator has a different default subscription, and the handle alone must
still lead it to the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    StartOperator,
    static_claim,
    unique_name,
)

OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-0000000b0b0b"
"""The restoring operator's default subscription; the emulator serves none of it."""


def test_restore_by_an_operator_configured_for_another_subscription(
    start_operator: StartOperator,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    home_subscription = volume.id.split("/")[2]
    assert home_subscription.lower() != OTHER_SUBSCRIPTION
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, "Retain")
    static_claim(kube, namespace, volume, storage_class)

    backing_up = start_operator()
    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
    vs = kube.wait_snapshot_ready(namespace, "snap")
    content = kube.content(vs["status"]["boundVolumeSnapshotContentName"])
    assert content is not None
    handle = content["status"]["snapshotHandle"]
    assert handle.split("#")[0] == home_subscription
    backing_up.stop()

    restoring = start_operator(AZURE_SUBSCRIPTION_ID=OTHER_SUBSCRIPTION)
    # What Velero's restore creates: a static content with the stored handle, a VolumeSnapshot
    # bound to it, and a claim restoring from that VolumeSnapshot.
    restored = unique_name("restored")
    kube.create_content(restored, handle, snapshot_namespace=namespace, snapshot_name=restored)
    kube.create_snapshot(namespace, restored, content=restored)
    kube.wait_snapshot_ready(namespace, restored)
    kube.create_claim(namespace, "data-restored", storage_class, "10Gi", snapshot=restored)
    claim = kube.wait_claim_bound(namespace, "data-restored")

    new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{claim.metadata.uid}")
    assert new_volume.creation_data.create_source == "VolumeSnapshot"
    assert (
        new_volume.creation_data.source_id.lower()
        == (f"{volume.id}".rsplit("/volumes/", 1)[0] + f"/snapshots/snapshot-{vs['metadata']['uid']}").lower()
    )
    pv = kube.core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.csi.volume_handle.split("#")[0] == home_subscription
    assert restoring.running()
