"""A claim deleted while its volume is being made never leaves a ``pvc-<uid>`` volume behind."""

from __future__ import annotations

import pytest
from fake_kube import Crash, FakeKube, Request
from harness import GROUP, NAMESPACE, SAN, Operator, claim, seeded_azure, storage_class

from elasticsan_snapshotter.kubernetes.resources import (
    FIN_CLAIM_PROVISIONING,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
)


def _creates_pv(request: Request) -> bool:
    return request.method == "POST" and request.plural == PERSISTENT_VOLUME.plural


async def volume_names(azure: object) -> list[str]:
    return [v.id.name for v in await azure.list_volumes(GROUP)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("restart", [True, False])
async def test_a_claim_deleted_between_volume_and_pv_takes_its_volume_with_it(restart: bool) -> None:
    kube, azure = FakeKube(), seeded_azure(volumes=())
    storage_class(kube, elasticSanId=SAN.arm_id, volumeGroup=GROUP.name)
    uid = claim(kube, "data")["metadata"]["uid"]
    operator = Operator(kube, azure)
    kube.crash_when = _creates_pv
    operator.deliver_all()
    with pytest.raises(Crash):
        await operator.reconcile("claims", f"{NAMESPACE}/data")
    kube.crash_when = None
    assert await volume_names(azure) == [f"pvc-{uid}"]

    kube.delete_direct(PERSISTENT_VOLUME_CLAIM, "data", NAMESPACE)  # while the operator is down
    if restart:
        operator.restart()
    await operator.settle()
    assert await volume_names(azure) == []
    assert kube.get_object(PERSISTENT_VOLUME_CLAIM, "data", NAMESPACE) is None
    assert kube.all(PERSISTENT_VOLUME) == []


async def test_a_provisioned_claim_keeps_no_finalizer_and_its_volume_belongs_to_the_pv() -> None:
    kube, azure = FakeKube(), seeded_azure(volumes=())
    storage_class(kube, elasticSanId=SAN.arm_id, volumeGroup=GROUP.name)
    uid = claim(kube, "data")["metadata"]["uid"]
    operator = Operator(kube, azure)
    await operator.settle()
    body = kube.get_object(PERSISTENT_VOLUME_CLAIM, "data", NAMESPACE)
    assert body is not None
    assert FIN_CLAIM_PROVISIONING not in (body["metadata"].get("finalizers") or [])
    assert kube.get_object(PERSISTENT_VOLUME, f"pvc-{uid}") is not None

    kube.delete_direct(PERSISTENT_VOLUME_CLAIM, "data", NAMESPACE)
    await operator.settle()
    assert await volume_names(azure) == [f"pvc-{uid}"]  # the PV's reclaim policy decides, not the claim
