"""Bad input is never accepted silently, and messages a user reads stay readable."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from harness import (
    GROUP,
    NAMESPACE,
    SAN,
    SUBSCRIPTION,
    Operator,
    claim,
    dynamic_content,
    export,
    exported,
    seeded_azure,
    snapshot_taken,
    storage_class,
    volume_snapshot,
)

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.domain.mapping import SanIndex, UnmappedVolume, volume_of
from elasticsan_snapshotter.kubernetes.resources import (
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
)

VOLUME = GROUP.volume("vol1")


def snapshot_class(kube: FakeKube, **parameters: str) -> None:
    kube.seed(
        VOLUME_SNAPSHOT_CLASS,
        {
            "metadata": {"name": "elasticsan"},
            "driver": DRIVER_NAME,
            "deletionPolicy": "Delete",
            "parameters": parameters,
        },
    )


async def test_an_unknown_snapshot_class_key_is_a_warning_on_the_snapshot_which_is_still_taken() -> None:
    kube, azure = FakeKube(), seeded_azure()
    snapshot_class(kube, foo="bar")
    _operator, content = await snapshot_taken(kube, azure)
    (warning,) = kube.events_about("snap", "UnknownParameter")
    assert warning["type"] == "Warning"
    assert "'foo'" in warning["message"]
    assert warning["involvedObject"]["kind"] == "VolumeSnapshot"
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, content)
    assert body is not None
    assert body["status"]["readyToUse"] is True


async def test_a_garbage_snapshot_class_value_is_a_final_error_before_any_azure_write() -> None:
    kube, azure = FakeKube(), seeded_azure()
    snapshot_class(kube, exportBeforeVolumeDelete="perhaps")
    _operator, content = await snapshot_taken(kube, azure)
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, content)
    assert body is not None
    assert "exportBeforeVolumeDelete" in body["status"]["error"]["message"]
    assert body["status"]["readyToUse"] is False
    assert azure.call_count("create_snapshot") == 0


async def test_a_storage_class_with_an_unknown_key_provisions_with_a_warning() -> None:
    kube, azure = FakeKube(), seeded_azure(volumes=())
    storage_class(kube, elasticSanId=SAN.arm_id, volumeGroup=GROUP.name, colour="blue")
    claim(kube, "data")
    operator = Operator(kube, azure)
    await operator.settle()
    (warning,) = kube.events_about("data", "UnknownParameter")
    assert "'colour'" in warning["message"]
    assert len(kube.all(PERSISTENT_VOLUME)) == 1


async def test_a_bad_fstype_is_refused_not_copied_into_the_pv() -> None:
    kube, azure = FakeKube(), seeded_azure(volumes=())
    storage_class(
        kube, elasticSanId=SAN.arm_id, volumeGroup=GROUP.name, **{"csi.storage.k8s.io/fstype": "notafs"}
    )
    claim(kube, "data")
    operator = Operator(kube, azure)
    await operator.settle()
    assert kube.all(PERSISTENT_VOLUME) == []
    assert await azure.list_volumes(GROUP) == []
    (failed,) = kube.events_about("data", "ProvisioningFailed")
    assert "csi.storage.k8s.io/fstype" in failed["message"]
    assert "InvalidParameter" in failed["message"]


async def test_an_export_of_a_snapshot_that_failed_for_good_fails_with_its_reason() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    dynamic_content(
        kube,
        vs,
        VOLUME,
        status={"readyToUse": False, "error": {"time": "2026-01-01T00:00:00Z", "message": "the SAN said no"}},
    )
    export(kube, volumeSnapshotName="snap")
    operator = Operator(kube, azure)
    body = await exported(operator)
    assert body["status"]["phase"] == "Failed"
    assert "the SAN said no" in body["status"]["error"]["message"]


async def test_an_export_of_a_missing_content_names_it_once() -> None:
    kube, azure = FakeKube(), seeded_azure()
    export(kube, volumeSnapshotContentName="gone")
    operator = Operator(kube, azure)
    body = await exported(operator)
    assert body["status"]["error"]["message"] == "VolumeSnapshotContent gone does not exist"


async def test_sizes_are_compared_in_one_unit() -> None:
    kube, azure = FakeKube(), seeded_azure()
    storage_class(kube)
    vs = volume_snapshot(kube, "snap")
    dynamic_content(kube, vs, VOLUME)
    operator = Operator(kube, azure)
    await operator.settle()
    kube.patch_status_direct(
        VOLUME_SNAPSHOT,
        "snap",
        {"restoreSize": "10Gi"},
        NAMESPACE,
    )
    body = claim(kube, "restored", size="5Gi")
    kube.patch_direct(
        PERSISTENT_VOLUME_CLAIM,
        "restored",
        {
            "spec": {
                "dataSource": {
                    "apiGroup": "snapshot.storage.k8s.io",
                    "kind": "VolumeSnapshot",
                    "name": "snap",
                }
            }
        },
        NAMESPACE,
    )
    assert body
    await operator.settle(rounds=3)
    (failed,) = kube.events_about("restored", "ProvisioningFailed")
    assert "requests 5Gi, less than the restore size 10Gi" in failed["message"]


async def test_a_huge_annotation_is_not_quoted_in_full() -> None:
    azure = seeded_azure()
    pv = {"metadata": {"name": "pv1", "annotations": {"elasticsan.snapshotter.dev/volume-id": "x" * 11_000}}}
    with pytest.raises(UnmappedVolume) as caught:
        await volume_of(pv, index=SanIndex(azure, [SAN]), default_subscription=SUBSCRIPTION)
    assert len(str(caught.value)) < 1000
    assert "11000 characters" in str(caught.value)
