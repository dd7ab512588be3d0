"""The provisioner places volumes by the rules CSI CreateVolume uses: a class may leave the SAN and group out.

Before the one volume plan, the operator refused a class that named neither (or only one of)
``elasticSanId`` and ``volumeGroup``, and took no SAN by name; the CSI controller took both.
"""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from harness import GROUP, SAN, Operator, claim, seeded_azure, storage_class

from elasticsan_snapshotter.domain.identity import VolumeId
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME

pytestmark = pytest.mark.unit


async def provisioned(**parameters: str) -> tuple[FakeKube, list[VolumeId]]:
    kube, azure = FakeKube(), seeded_azure(volumes=())
    storage_class(kube, **parameters)
    claim(kube, "data")
    await Operator(kube, azure).settle()
    return kube, [v.id for v in await azure.list_volumes(GROUP)]


async def test_a_class_naming_no_san_uses_the_first_managed_sans_only_group() -> None:
    kube, volumes = await provisioned()
    [pv] = kube.all(PERSISTENT_VOLUME)
    assert [VolumeId.parse(pv["spec"]["csi"]["volumeHandle"], SAN.subscription)] == volumes
    assert volumes[0].volume_group == GROUP


async def test_a_class_may_name_a_managed_san_by_its_name_and_leave_the_group_out() -> None:
    kube, volumes = await provisioned(elasticSanId=SAN.name)
    assert len(kube.all(PERSISTENT_VOLUME)) == 1
    assert [v.volume_group for v in volumes] == [GROUP]


async def test_a_san_name_that_is_not_managed_is_refused_naming_the_parameter() -> None:
    kube, volumes = await provisioned(elasticSanId="elsewhere", volumeGroup=GROUP.name)
    assert kube.all(PERSISTENT_VOLUME) == []
    assert volumes == []
    (failed,) = kube.events_about("data", "ProvisioningFailed")
    assert "StorageClass elasticsan parameter elasticSanId 'elsewhere'" in failed["message"]
