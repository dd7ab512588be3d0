"""One parser for class parameters, with the known keys and their types, for both modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from elasticsan_snapshotter.domain.parameters import (
    InvalidParameter,
    parse_snapshot_class,
    parse_storage_class,
)

EXAMPLES = Path(__file__).parents[3] / "examples"


def test_the_examples_use_only_known_keys() -> None:
    storage = yaml.safe_load((EXAMPLES / "storageclass.yaml").read_text())
    parsed = parse_storage_class(storage["parameters"])
    assert parsed.unknown == ()
    assert parsed.elastic_san is not None
    assert parsed.elastic_san.endswith("/elasticSans/my-elastic-san")
    assert parsed.volume_group == "my-volume-group"
    assert parsed.fstype == "ext4"
    assert parsed.delete_snapshots_with_volume is False
    snapshot = yaml.safe_load((EXAMPLES / "volumesnapshotclass.yaml").read_text())
    assert parse_snapshot_class(snapshot.get("parameters")).unknown == ()


def test_unknown_keys_are_reported_and_the_sidecars_keys_left_alone() -> None:
    parsed = parse_storage_class(
        {
            "foo": "bar",
            "volumegroup": "x",
            "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/bogus": "1",
        }
    )
    assert parsed.unknown == ("csi.storage.k8s.io/bogus", "foo", "volumegroup")
    assert parse_snapshot_class({"foo": "bar", "csi.storage.k8s.io/volumesnapshot/name": "s"}).unknown == (
        "foo",
    )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"exportBeforeVolumeDelete": "perhaps"}, "exportBeforeVolumeDelete"),
        ({"deleteSnapshotsWithVolume": "yes"}, "deleteSnapshotsWithVolume"),
        ({"csi.storage.k8s.io/fstype": "notafs"}, "csi.storage.k8s.io/fstype"),
        ({"volumeGroup": "  "}, "volumeGroup"),
    ],
)
def test_a_known_key_with_a_value_it_cannot_have_is_final_and_named(params: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidParameter, match=key) as caught:
        parse_storage_class(params, "StorageClass fast")
    assert caught.value.final
    assert "StorageClass fast" in str(caught.value)


def test_flags_take_true_or_false_in_any_case() -> None:
    assert parse_snapshot_class({"exportBeforeVolumeDelete": "True"}).export_before_volume_delete
    assert not parse_snapshot_class({"exportBeforeVolumeDelete": "FALSE"}).export_before_volume_delete
    with pytest.raises(InvalidParameter):
        parse_snapshot_class({"exportBeforeVolumeDelete": "perhaps"})


def test_a_huge_value_is_not_quoted_in_full() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_storage_class({"csi.storage.k8s.io/fstype": "x" * 11_000})
    assert len(str(caught.value)) < 400
    assert "11000 characters" in str(caught.value)
