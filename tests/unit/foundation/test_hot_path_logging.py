"""Per-request and per-event log lines stay below INFO: they cost CPU on every snapshot."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from elasticsan_snapshotter.log_output import configure_logging
from elasticsan_snapshotter.operator_command import quiet_per_event_logs

pytestmark = pytest.mark.unit

# azure-core's HTTP logging policy writes every request and response with headers at INFO.
AZURE_HTTP = "azure.core.pipeline.policies.http_logging_policy"
# Kopf writes "Handler ... succeeded." at INFO after every watch event.
KOPF_OBJECTS = "kopf.objects"


@pytest.fixture(autouse=True)
def _restore_levels() -> Iterator[None]:
    names = ("", "azure", AZURE_HTTP, "kopf", KOPF_OBJECTS)
    saved = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


def test_the_csi_controller_logs_no_azure_http_exchange_at_info() -> None:
    configure_logging("text")
    assert logging.getLogger("elasticsan_snapshotter.csi").isEnabledFor(logging.INFO)
    assert not logging.getLogger(AZURE_HTTP).isEnabledFor(logging.INFO)
    assert logging.getLogger(AZURE_HTTP).isEnabledFor(logging.WARNING)


@pytest.mark.parametrize("verbose", [False, True])
def test_the_operator_logs_kopf_handler_successes_only_when_verbose(verbose: bool) -> None:
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet_per_event_logs(verbose=verbose)
    assert logging.getLogger(KOPF_OBJECTS).isEnabledFor(logging.INFO) is verbose
    assert logging.getLogger(KOPF_OBJECTS).isEnabledFor(logging.WARNING)
    assert not logging.getLogger(AZURE_HTTP).isEnabledFor(logging.INFO)
