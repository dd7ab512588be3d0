"""An export's source may be a member snapshot of a VolumeGroupSnapshot (its content has the PVs' driver)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.kubernetes.api import KubeApi
from elasticsan_snapshotter.kubernetes.export_source import ExportSources
from elasticsan_snapshotter.kubernetes.export_spec import ExportSpec
from kube_stand_in import FakeApi

pytestmark = pytest.mark.unit

DRIVER, GROUP_DRIVER = "elasticsan.snapshotter.dev", "iscsi.csi.k8s.io"
MEMBER_HANDLE = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle"
HANDLE = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/san"
    "/volumegroups/vg/snapshots/snap-1"
)


def sources(driver: str, annotations: dict[str, str]) -> tuple[ExportSources, FakeApi]:
    api = FakeApi()
    api.objects[("volumesnapshots", "ns", "member")] = {
        "metadata": {"name": "member", "namespace": "ns"},
        "status": {"boundVolumeSnapshotContentName": "content", "readyToUse": True},
    }
    content: dict[str, Any] = {
        "metadata": {"name": "content", "annotations": annotations},
        "spec": {"driver": driver},
        "status": {"snapshotHandle": HANDLE, "readyToUse": True},
    }
    api.objects[("volumesnapshotcontents", "", "content")] = content
    found = ExportSources(
        api=cast(KubeApi, api),
        azure=InMemoryAzure(),
        subscription="sub",
        driver_name=DRIVER,
        group_driver_name=GROUP_DRIVER,
    )
    return found, api


async def test_a_group_member_snapshot_can_be_exported() -> None:
    found, _ = sources(GROUP_DRIVER, {MEMBER_HANDLE: "group-handle"})
    source = await found.resolve(
        {"metadata": {"namespace": "ns", "name": "e"}}, ExportSpec(volume_snapshot="member")
    )
    assert source.snapshot.name == "snap-1"
    assert source.volume_snapshot == "member"


@pytest.mark.parametrize(
    ("driver", "annotations"),
    [(GROUP_DRIVER, {}), ("other.csi.example.com", {MEMBER_HANDLE: "group-handle"})],
)
async def test_other_drivers_are_still_refused(driver: str, annotations: dict[str, str]) -> None:
    found, _ = sources(driver, annotations)
    with pytest.raises(InvalidRequest, match="only Elastic SAN snapshots of this driver"):
        await found.resolve(
            {"metadata": {"namespace": "ns", "name": "e"}}, ExportSpec(volume_snapshot="member")
        )
