"""At start-up the operator makes one authenticated Azure read, before any snapshot needs Azure.

Fetched lazily, the token (and the TLS connection) cost the first snapshots after every start a
few hundred milliseconds; the CSI controller's Probe pays that at start-up already.
"""

from __future__ import annotations

import logging

import pytest
from fake_kube import FakeKube
from harness import Operator, seeded_azure

from elasticsan_snapshotter.domain.errors import Unauthenticated

pytestmark = pytest.mark.unit


async def test_the_start_up_check_reads_the_managed_san_once() -> None:
    azure = seeded_azure()
    operator = Operator(FakeKube(), azure)
    azure.reset_calls()
    await operator.runtime.check_azure()
    assert dict(azure.calls) == {"get_elastic_san": 1}


async def test_refused_credentials_at_start_up_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    azure = seeded_azure()
    operator = Operator(FakeKube(), azure)
    azure.fail_next("get_elastic_san", Unauthenticated("the client secret is wrong"))
    with caplog.at_level(logging.WARNING):
        await operator.runtime.check_azure()
    assert "Azure check at start-up failed" in caplog.text
    assert "the client secret is wrong" in caplog.text
