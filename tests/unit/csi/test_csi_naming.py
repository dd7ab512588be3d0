from __future__ import annotations

import pytest

from elasticsan_snapshotter.csi.naming import snapshot_name, volume_name
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.identity import CSI_MAX_BYTES, ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.names import SNAPSHOT_NAME, VOLUME_NAME

SANITY_NAME = "sanity-controller-create-twice-1A2B3C4D-5E6F7A8B"
UID_NAME = "snapshot-3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_valid_names_are_kept() -> None:
    assert snapshot_name(UID_NAME) == UID_NAME
    assert (
        volume_name("pvc-3f2504e0-4f89-11d3-9a0c-0305e82c3301") == "pvc-3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    )


@pytest.mark.parametrize("name", [SANITY_NAME, "Name With Spaces", "x" * 128, "a", "___", "é-ü"])
def test_other_names_are_folded_into_valid_deterministic_names(name: str) -> None:
    for derive, rule in ((snapshot_name, SNAPSHOT_NAME), (volume_name, VOLUME_NAME)):
        derived = derive(name)
        assert rule.is_valid(derived), derived
        assert derive(name) == derived


def test_names_that_fold_alike_stay_apart() -> None:
    assert volume_name("Data-1") != volume_name("data-1")
    assert snapshot_name("x" * 128) != snapshot_name("x" * 127)
    assert snapshot_name(SANITY_NAME).startswith("sanity-controller-create-twice-1a2b3c4d-5e6f7a8b-")


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="name is required"):
        volume_name("")


def test_handles_fit_the_csi_limit_or_are_refused() -> None:
    sub = "00000000-0000-0000-0000-000000000001"
    longest_name = volume_name("y" * 128)
    volume = ElasticSanId(sub, "rg", "san1").volume_group("vg1").volume(longest_name)
    handle = volume.handle(sub)
    assert len(handle.encode()) <= CSI_MAX_BYTES
    assert VolumeId.parse(handle, sub) == volume
    crowded = ElasticSanId(sub, "r" * 60, "s" * 24).volume_group("g" * 40).volume(longest_name)
    with pytest.raises(InvalidRequest, match="128 bytes"):
        crowded.handle(sub)
