"""Derived names and the name rules of the Elastic SAN and Compute APIs."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain import names
from elasticsan_snapshotter.domain.errors import InvalidRequest

pytestmark = pytest.mark.unit

UID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

dns_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
dns_subdomains = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,120}[a-z0-9])?", fullmatch=True)


def test_snapshot_name_is_csi_snapshotters_default() -> None:
    assert names.snapshot_name(UID) == f"snapshot-{UID}"


def test_volume_name_is_csi_provisioners_default() -> None:
    assert names.volume_name(UID) == f"pvc-{UID}"


def test_upper_case_uids_give_the_same_names() -> None:
    assert names.snapshot_name(UID.upper()) == names.snapshot_name(UID)
    assert names.volume_name(UID.upper()) == names.volume_name(UID)


@given(st.uuids())
def test_names_from_any_uid_satisfy_the_api_rules(uid: uuid.UUID) -> None:
    assert names.SNAPSHOT_NAME.is_valid(names.snapshot_name(str(uid)))
    assert names.VOLUME_NAME.is_valid(names.volume_name(str(uid)))
    assert names.DISK_SNAPSHOT_NAME.is_valid(names.export_disk_snapshot_name_from_uid(str(uid)))


@pytest.mark.parametrize("uid", ["", "   ", "not a uid", "../etc", "3f2504e0_4f89", "-abc", "a" * 65])
def test_unusable_uids_are_refused(uid: str) -> None:
    with pytest.raises(InvalidRequest, match="UID"):
        names.snapshot_name(uid)
    with pytest.raises(InvalidRequest, match="UID"):
        names.volume_name(uid)


def test_export_name_is_readable_when_it_can_be() -> None:
    assert names.export_disk_snapshot_name("prod", "nightly-db") == "esexport-prod_nightly-db"


def test_export_name_with_a_dot_is_hashed_and_distinct_from_the_dash_form() -> None:
    dotted = names.export_disk_snapshot_name("prod", "db.v1")
    dashed = names.export_disk_snapshot_name("prod", "db-v1")
    assert dotted != dashed
    assert "__" in dotted
    assert dotted.startswith("esexport-prod_db-v1__")


def test_long_export_names_are_shortened_to_the_limit() -> None:
    name = names.export_disk_snapshot_name("n" * 63, "x" * 253)
    assert len(name) == 80
    assert names.DISK_SNAPSHOT_NAME.is_valid(name)


@given(dns_labels, dns_subdomains)
def test_export_names_are_valid_and_deterministic(namespace: str, name: str) -> None:
    first = names.export_disk_snapshot_name(namespace, name)
    assert names.DISK_SNAPSHOT_NAME.is_valid(first)
    assert first == names.export_disk_snapshot_name(namespace, name)


@given(dns_labels, dns_subdomains, dns_labels, dns_subdomains)
def test_different_exports_get_different_names(ns1: str, n1: str, ns2: str, n2: str) -> None:
    if (ns1, n1) != (ns2, n2):
        assert names.export_disk_snapshot_name(ns1, n1) != names.export_disk_snapshot_name(ns2, n2)


@pytest.mark.parametrize(
    ("namespace", "name"), [("Prod", "x"), ("prod", "X"), ("", "x"), ("a_b", "x"), ("p", "")]
)
def test_export_names_need_kubernetes_names(namespace: str, name: str) -> None:
    with pytest.raises(InvalidRequest):
        names.export_disk_snapshot_name(namespace, name)


@pytest.mark.parametrize(
    ("validate", "good", "bad"),
    [
        (
            names.validate_elastic_san_name,
            ["abc", "San_1-x", "A" * 24],
            ["ab", "a" * 25, "-abc", "ab--c", "a.bc"],
        ),
        (names.validate_volume_group_name, ["vg1", "Vg_1-x", "g" * 63], ["vg", "g" * 64, "vg_", "v g"]),
        (
            names.validate_volume_name,
            ["vol", "pvc-abc", "v1-Ab"],
            ["Vol", "vo", "vol_1", "vol.1", "vol-", "v" * 64],
        ),
        (names.validate_snapshot_name, ["s", "snap.1_a-b", "s" * 80], ["", "Snap", "s..1", "s-", "s" * 81]),
        (
            names.validate_disk_snapshot_name,
            ["d", "Disk_1-a", "d_", "d" * 80],
            ["", "-d", "d-", "d.e", "d" * 81],
        ),
    ],
)
def test_user_supplied_names_follow_the_api_rules(validate, good: list[str], bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    for name in good:
        assert validate(name) == name
    for name in bad:
        with pytest.raises(InvalidRequest, match="not a valid"):
            validate(name)


def test_a_rule_explains_itself() -> None:
    with pytest.raises(InvalidRequest) as caught:
        names.validate_volume_name("My_Volume")
    message = str(caught.value)
    assert "'My_Volume'" in message
    assert "3-63" in message
    assert "no '_'" in message
