"""What a test does when something it needs is missing: skip with the reason, but fail under ``CI=true``,
where every capability must be present and a skip would hide a test that never ran."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    """Skip the calling test with ``reason``; under ``CI=true`` fail it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing capability fails)", pytrace=False)
    pytest.skip(reason)
