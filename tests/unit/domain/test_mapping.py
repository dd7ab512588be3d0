"""PersistentVolume -> Elastic SAN volume, and the index of managed SANs behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from elasticsan_snapshotter.azure.fake import InMemoryAzure, ManualClock
from elasticsan_snapshotter.domain.errors import Forbidden, InvalidRequest, Transient
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.mapping import (
    ISCSI_DRIVER,
    VOLUME_ID_ANNOTATION,
    IndexRefreshPending,
    IscsiTarget,
    SanIndex,
    UnmanagedElasticSan,
    UnmappedVolume,
    iscsi_target_of,
    normalise_iqn,
    normalise_portal,
    volume_of,
)

pytestmark = pytest.mark.unit

SUB = "sub-1"
SAN = ElasticSanId(SUB, "rg", "san1")
OTHER_SAN = ElasticSanId(SUB, "rg", "san2")
GROUP = SAN.volume_group("vg1")
VOLUME = GROUP.volume("vol1")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)


@pytest.fixture
def azure(clock: ManualClock) -> InMemoryAzure:
    fake = InMemoryAzure(clock=clock)
    for san in (SAN, OTHER_SAN):
        fake.add_elastic_san(san)
        fake.add_volume_group(san.volume_group("vg1"))
    fake.add_volume(VOLUME, 10)
    fake.add_volume(OTHER_SAN.volume_group("vg1").volume("vol9"), 10)
    return fake


@pytest.fixture
def index(azure: InMemoryAzure, clock: ManualClock) -> SanIndex:
    return SanIndex(azure, [SAN], ttl=600, miss_refresh_interval=60, clock=clock)


def iscsi_pv(
    iqn: str, portal: str | None, *, name: str = "pv1", handle: str = "iscsi-data-id"
) -> dict[str, Any]:
    attributes = {"iqn": iqn, "lun": "0"}
    if portal is not None:
        attributes["targetPortal"] = portal
    return {
        "metadata": {"name": name},
        "spec": {"csi": {"driver": ISCSI_DRIVER, "volumeHandle": handle, "volumeAttributes": attributes}},
    }


async def target_of(azure: InMemoryAzure, volume: VolumeId) -> tuple[str, str]:
    info = await azure.get_volume(volume)
    return info.target_iqn, info.target_portal


# --- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("portal", "expected"),
    [
        ("ES-abc.z1.blob.storage.azure.net", "es-abc.z1.blob.storage.azure.net:3260"),
        ("es-abc.z1.blob.storage.azure.net:3260", "es-abc.z1.blob.storage.azure.net:3260"),
        (" 10.0.0.4:3261 ", "10.0.0.4:3261"),
        ("[FD00::1]:3260", "[fd00::1]:3260"),
        ("[fd00::1]", "[fd00::1]:3260"),
        ("fd00::1", "[fd00::1]:3260"),
    ],
)
def test_portals_are_normalised(portal: str, expected: str) -> None:
    assert normalise_portal(portal) == expected


@pytest.mark.parametrize("portal", ["", ":3260", "host:port", "host:0", "host:70000", "[fd00::1", "[]:3260"])
def test_malformed_portals_are_refused(portal: str) -> None:
    with pytest.raises(InvalidRequest):
        normalise_portal(portal)


def test_iqns_compare_without_case() -> None:
    assert normalise_iqn(" iqn.2023-03.net.windows.core.blob.ElasticSan.es-x:Vol ") == (
        "iqn.2023-03.net.windows.core.blob.elasticsan.es-x:vol"
    )


def test_iscsi_target_from_csi_attributes_and_in_tree_spec() -> None:
    assert iscsi_target_of(iscsi_pv("IQN.A:b", "Host")) == IscsiTarget("iqn.a:b", "host:3260")
    in_tree = {"spec": {"iscsi": {"iqn": "iqn.a:b", "targetPortal": "host:3261", "lun": 0}}}
    assert iscsi_target_of(in_tree) == IscsiTarget("iqn.a:b", "host:3261")
    other_driver = {"spec": {"csi": {"driver": "disk.csi.azure.com", "volumeAttributes": {"iqn": "iqn.a:b"}}}}
    assert iscsi_target_of(other_driver) is None
    assert iscsi_target_of({"spec": {}}) is None


# --- the three ways in, in order ------------------------------------------------------------


async def test_annotation_wins_over_everything(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, portal = await target_of(azure, VOLUME)
    pv = iscsi_pv(iqn, portal, handle="rg#san1#vg1#other")
    annotated = GROUP.volume("explicit")
    pv["metadata"]["annotations"] = {VOLUME_ID_ANNOTATION: annotated.arm_id}
    assert await volume_of(pv, index=index, default_subscription=SUB) == annotated
    assert azure.calls["list_volumes"] == 0  # no index needed


async def test_bad_annotation_is_a_final_error_not_a_fallback(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, portal = await target_of(azure, VOLUME)
    pv = iscsi_pv(iqn, portal)
    pv["metadata"]["annotations"] = {VOLUME_ID_ANNOTATION: "rg#san1#vg1#vol1"}
    with pytest.raises(UnmappedVolume, match="not a full ARM ID"):
        await volume_of(pv, index=index, default_subscription=SUB)
    pv["metadata"]["annotations"] = {VOLUME_ID_ANNOTATION: "/subscriptions/x/nonsense"}
    with pytest.raises(UnmappedVolume, match="not usable"):
        await volume_of(pv, index=index, default_subscription=SUB)


@pytest.mark.parametrize("handle", ["rg#san1#vg1#vol1", VOLUME.arm_id, VOLUME.arm_id.upper()])
async def test_volume_handle_as_arm_id_or_compact_handle(
    handle: str, index: SanIndex, azure: InMemoryAzure
) -> None:
    pv = {
        "metadata": {"name": "pv"},
        "spec": {"csi": {"driver": "elasticsan.snapshotter.dev", "volumeHandle": handle}},
    }
    assert await volume_of(pv, index=index, default_subscription=SUB) == VOLUME
    assert azure.calls["list_volume_groups"] == 0


async def test_iscsi_attributes_are_looked_up_in_the_index(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, portal = await target_of(azure, VOLUME)
    pv = iscsi_pv(iqn.upper(), portal.split(":")[0].upper())  # case and default port do not matter
    assert await volume_of(pv, index=index, default_subscription=SUB) == VOLUME


async def test_iscsi_without_portal_matches_on_the_iqn(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, _ = await target_of(azure, VOLUME)
    assert await volume_of(iscsi_pv(iqn, None), index=index, default_subscription=SUB) == VOLUME


async def test_known_iqn_at_another_portal_is_explained(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, _ = await target_of(azure, VOLUME)
    with pytest.raises(UnmappedVolume, match=r"the IQN is known, but at portal .*:3260"):
        await volume_of(iscsi_pv(iqn, "10.1.2.3:3260"), index=index, default_subscription=SUB)


async def test_unmapped_pv_error_names_everything_tried(azure: InMemoryAzure, index: SanIndex) -> None:
    pv = iscsi_pv(
        "iqn.2023-03.net.windows.core.blob.ElasticSan.es-unknown00000:vol", "es-unknown00000.z1.x:3260"
    )
    with pytest.raises(UnmappedVolume) as caught:
        await volume_of(pv, index=index, default_subscription=SUB)
    message = str(caught.value)
    assert "pv1" in message
    assert f"annotation {VOLUME_ID_ANNOTATION} (absent)" in message
    assert "'iscsi-data-id' (neither an ARM ID nor a compact handle)" in message
    assert "es-unknown00000" in message
    assert "managed Elastic SANs: san1" in message
    assert "Add annotation" in message
    assert caught.value.final
    assert isinstance(caught.value, InvalidRequest)


async def test_pv_with_nothing_to_go_on(index: SanIndex) -> None:
    with pytest.raises(
        UnmappedVolume, match=r"spec.csi.volumeHandle \(absent\).*iSCSI attributes .* \(absent\)"
    ):
        await volume_of({"metadata": {"name": "bare"}, "spec": {}}, index=index, default_subscription=SUB)


async def test_volume_in_an_unmanaged_san_is_a_clear_error(azure: InMemoryAzure, index: SanIndex) -> None:
    unmanaged = OTHER_SAN.volume_group("vg1").volume("vol9")
    pv: dict[str, Any] = {
        "metadata": {"name": "pv9"},
        "spec": {"csi": {"driver": "x", "volumeHandle": unmanaged.arm_id}},
    }
    with pytest.raises(UnmanagedElasticSan, match="san2, which this operator does not manage"):
        await volume_of(pv, index=index, default_subscription=SUB)
    pv["metadata"]["annotations"] = {VOLUME_ID_ANNOTATION: unmanaged.arm_id}
    with pytest.raises(UnmanagedElasticSan, match="annotation"):
        await volume_of(pv, index=index, default_subscription=SUB)


async def test_iqn_of_an_unmanaged_san_is_not_found(azure: InMemoryAzure, index: SanIndex) -> None:
    iqn, portal = await target_of(azure, OTHER_SAN.volume_group("vg1").volume("vol9"))
    with pytest.raises(UnmappedVolume, match="not in the managed Elastic SANs"):
        await volume_of(iscsi_pv(iqn, portal), index=index, default_subscription=SUB)
    assert azure.calls["list_volume_groups"] >= 1
    assert azure.calls["list_volumes"] == 1  # only the managed SAN's one group


# --- index refresh behaviour ----------------------------------------------------------------


async def test_lookups_within_the_ttl_share_one_round_of_list_calls(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    target = IscsiTarget.of(*(await target_of(azure, VOLUME)))
    for _ in range(50):
        assert (await index.lookup(target)) is not None
        clock.advance(10)  # 500 s in all, under the 600 s TTL
    assert index.refresh_count == 1
    assert azure.calls["list_volume_groups"] == 1
    assert azure.calls["list_volumes"] == 1


async def test_the_index_refreshes_after_the_ttl(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    target = IscsiTarget.of(*(await target_of(azure, VOLUME)))
    await index.lookup(target)
    clock.advance(599)
    await index.lookup(target)
    assert index.refresh_count == 1
    clock.advance(1)
    await index.lookup(target)
    assert index.refresh_count == 2


async def test_a_miss_refreshes_to_find_a_new_volume(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    await index.refresh()
    new = GROUP.volume("vol2")
    azure.add_volume(new, 5)
    target = IscsiTarget.of(*(await target_of(azure, new)))
    clock.advance(60)
    found = await index.lookup(target)
    assert found is not None
    assert found.id == new
    assert index.refresh_count == 2


async def test_a_storm_of_unknown_iqns_costs_one_refresh(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    await index.refresh()
    clock.advance(60)
    unknown = [IscsiTarget.of(f"iqn.2023-03.x:unknown{i}", None) for i in range(100)]
    results = await asyncio.gather(*(index.lookup(t) for t in unknown))
    assert results == [None] * 100
    assert index.refresh_count == 2  # the first refresh plus one for the whole storm
    for t in unknown:  # within the miss interval: no more list calls, and a retryable answer
        with pytest.raises(IndexRefreshPending) as pending:
            await index.lookup(t)
        assert pending.value.retryable
    assert index.refresh_count == 2
    assert azure.calls["list_volume_groups"] == 2


async def test_misses_refresh_again_after_the_interval(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    target = IscsiTarget.of("iqn.2023-03.x:gone", None)
    await index.lookup(target)
    assert index.refresh_count == 1  # the first lookup fills the index; its miss does not repeat it
    clock.advance(59)
    with pytest.raises(IndexRefreshPending) as pending:
        await index.lookup(target)  # the volume may be newer than the index: not final yet
    assert pending.value.retry_after == pytest.approx(1)
    assert index.refresh_count == 1
    clock.advance(1)
    assert await index.lookup(target) is None  # a fresh index confirms the miss
    assert index.refresh_count == 2


async def test_concurrent_first_lookups_fill_the_index_once(azure: InMemoryAzure, index: SanIndex) -> None:
    target = IscsiTarget.of(*(await target_of(azure, VOLUME)))
    results = await asyncio.gather(*(index.lookup(target) for _ in range(20)))
    assert {r.id for r in results if r is not None} == {VOLUME}
    assert index.refresh_count == 1
    assert azure.calls["list_volume_groups"] == 1


async def test_a_failed_first_refresh_raises_and_is_not_repeated_at_once(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    azure.fail_next("list_volume_groups", Transient("boom"))
    target = IscsiTarget.of("iqn.2023-03.x:any", None)
    with pytest.raises(Transient, match="boom"):
        await index.lookup(target)
    with pytest.raises(Transient, match="boom"):
        await index.lookup(target)  # still within the interval: no second list call
    assert azure.calls["list_volume_groups"] == 1
    clock.advance(60)
    assert await index.lookup(target) is None
    assert azure.calls["list_volume_groups"] == 2


async def test_a_failed_ttl_refresh_serves_hits_from_the_old_index(
    azure: InMemoryAzure, index: SanIndex, clock: ManualClock
) -> None:
    target = IscsiTarget.of(*(await target_of(azure, VOLUME)))
    await index.lookup(target)
    clock.advance(600)
    azure.fail_next("list_volumes", Forbidden("no role"))
    found = await index.lookup(target)
    assert found is not None
    assert found.id == VOLUME
    with pytest.raises(Forbidden):  # a miss cannot be trusted when the refresh failed
        await index.lookup(IscsiTarget.of("iqn.2023-03.x:other", None))


async def test_a_managed_san_that_does_not_exist_is_reported(
    azure: InMemoryAzure, clock: ManualClock
) -> None:
    ghost = ElasticSanId(SUB, "rg", "ghost")
    index = SanIndex(azure, [SAN, ghost], clock=clock)
    pv = iscsi_pv("iqn.2023-03.x:none", None)
    with pytest.raises(UnmappedVolume, match=r"not found in Azure: .*ghost"):
        await volume_of(pv, index=index, default_subscription=SUB)
    assert index.missing_sans == frozenset({ghost})
    assert index.is_managed(ghost)


async def test_index_covers_every_group_of_every_managed_san(
    azure: InMemoryAzure, clock: ManualClock
) -> None:
    azure.add_volume_group(SAN.volume_group("vg2"))
    azure.add_volume(SAN.volume_group("vg2").volume("vol3"), 1)
    index = SanIndex(azure, [SAN, OTHER_SAN], clock=clock)
    await index.refresh()
    assert len(index) == 3
    assert azure.calls["list_volume_groups"] == 2
    assert azure.calls["list_volumes"] == 3
