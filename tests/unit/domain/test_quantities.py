"""Kubernetes resource quantities and GiB arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elasticsan_snapshotter.domain.decisions import (
    GIB,
    bytes_to_gib,
    gib_to_bytes,
    parse_quantity,
    quantity_to_bytes,
)
from elasticsan_snapshotter.domain.errors import InvalidRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10Gi", 10 * 2**30),
        ("1Ti", 2**40),
        ("512Mi", 512 * 2**20),
        ("1Ki", 1024),
        ("2Pi", 2 * 2**50),
        ("1Ei", 2**60),
        ("1T", 10**12),
        ("500M", 500 * 10**6),
        ("1k", 1000),
        ("1G", 10**9),
        ("3E", 3 * 10**18),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2e-3", 1),  # 0.002 rounds up to a whole byte
        ("1.5Gi", 3 * 2**29),
        ("0.5", 1),
        (".5Ki", 512),
        ("5.", 5),
        ("+7", 7),
        ("1500m", 2),
        ("100", 100),
        (" 10Gi ", 10 * 2**30),
        (0, 0),
        (4096, 4096),
    ],
)
def test_quantities_in_bytes(text: str | int, expected: int) -> None:
    assert quantity_to_bytes(text) == expected


def test_parse_is_exact() -> None:
    assert parse_quantity("1.1Gi") == Fraction(11, 10) * 2**30
    assert parse_quantity("-1k") == -1000
    assert parse_quantity("100n") == Fraction(1, 10**7)


@pytest.mark.parametrize(
    "text", ["", "Gi", "10 Gi", "10GB", "10gi", "1.2.3", "1e", "abc", "10Gi5", "1x", "--1", "1e999999999"]
)
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        quantity_to_bytes(text)


@pytest.mark.parametrize("value", [True, 1.5, None])
def test_non_quantity_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_quantity(value)  # type: ignore[arg-type]


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        quantity_to_bytes("-1Gi")


@given(st.integers(min_value=0, max_value=2**62))
def test_integer_strings_are_bytes(n: int) -> None:
    assert quantity_to_bytes(str(n)) == n


@given(st.integers(min_value=0, max_value=2**20))
def test_gi_suffix_matches_gib_to_bytes(n: int) -> None:
    assert quantity_to_bytes(f"{n}Gi") == gib_to_bytes(n)


@pytest.mark.parametrize(
    ("size_bytes", "gib"),
    [(0, 1), (1, 1), (GIB, 1), (GIB + 1, 2), (10 * GIB, 10), (10 * GIB - 1, 10), (10**12, 932)],
)
def test_bytes_round_up_to_whole_gib_at_least_one(size_bytes: int, gib: int) -> None:
    assert bytes_to_gib(size_bytes) == gib


@given(st.integers(min_value=1, max_value=2**50))
def test_rounded_gib_always_hold_the_bytes(size_bytes: int) -> None:
    gib = bytes_to_gib(size_bytes)
    assert gib_to_bytes(gib) >= size_bytes
    assert gib_to_bytes(gib - 1) < size_bytes


def test_negative_bytes_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        bytes_to_gib(-1)
