"""The adapter's own logic, with the SDK operations replaced: idempotency, translation, logs, metrics."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.elasticsan import models as em

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.azure.client import ElasticSanAzure, _on_response
from elasticsan_snapshotter.azure.config import AzureConfig
from elasticsan_snapshotter.domain.decisions import VolumeHasSnapshots
from elasticsan_snapshotter.domain.errors import (
    AlreadyExists,
    NotFound,
    SnapshotterError,
    Throttled,
    Transient,
)
from elasticsan_snapshotter.domain.identity import ElasticSanId, SnapshotId, VolumeId

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
GROUP = ElasticSanId(SUB, "rg", "san").volume_group("vg")
VOLUME = GROUP.volume("vol")
OTHER = GROUP.volume("other")
SNAPSHOT = GROUP.snapshot("snapshot-1")


class StubCredential:
    """Never asked for a token: the SDK operations are replaced before any request."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token should be requested")

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StubCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


class Response:
    def __init__(self, status: int, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.request = HttpRequest("GET", "https://management.azure.com/x")
        self.status_code = status
        self.reason = "Reason"
        self.headers = headers or {}
        self._text = json.dumps({"error": {"code": code, "message": "m"}}) if code else ""

    def text(self, encoding: str | None = None) -> str:
        return self._text


def http_error(
    status: int, code: str, request_id: str, cls: type[HttpResponseError] = HttpResponseError
) -> Any:
    return cls(response=Response(status, code, {"x-ms-request-id": request_id}), error_format=ARMErrorFormat)


def snapshot_model(snapshot: SnapshotId, source: VolumeId) -> em.Snapshot:
    return em.Snapshot(
        {
            "id": snapshot.arm_id,
            "name": snapshot.name,
            "properties": {
                "creationData": {"sourceId": source.arm_id},
                "provisioningState": "Succeeded",
                "sourceVolumeSizeGiB": 10,
                "volumeName": source.name,
            },
        }
    )


class Poller:
    def __init__(self, result: Any = None) -> None:
        self._result = result

    async def result(self) -> Any:
        return self._result


def seen_response(status: int, request_id: str) -> None:
    """What azure-core does for each HTTP exchange: call the response hook."""
    request = SimpleNamespace(method="GET", url="https://management.azure.com/x?api-version=1")
    _on_response(
        SimpleNamespace(
            http_response=SimpleNamespace(
                headers={"x-ms-request-id": request_id}, status_code=status, request=request
            )
        )  # type: ignore[arg-type]
    )


def calls(operation: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "elasticsan_snapshotter_azure_calls_total", {"operation": operation, "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
async def adapter() -> AsyncIterator[ElasticSanAzure]:
    azure = ElasticSanAzure(AzureConfig(subscription_id=SUB), credential=StubCredential())
    try:
        yield azure
    finally:
        await azure.close()


async def test_create_snapshot_adopts_one_with_the_same_source(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get(*args: Any, **kwargs: Any) -> em.Snapshot:
        return snapshot_model(SNAPSHOT, VolumeId(VOLUME.volume_group, "VOL"))

    async def begin_create(*args: Any, **kwargs: Any) -> Poller:
        raise AssertionError("an existing snapshot must not be PUT again")

    monkeypatch.setattr(adapter._san.volume_snapshots, "get", get)
    monkeypatch.setattr(adapter._san.volume_snapshots, "begin_create", begin_create)
    info = await adapter.create_snapshot(SNAPSHOT, VOLUME)
    assert info.source_volume == VOLUME
    assert info.provisioning_state == "Succeeded"
    with pytest.raises(AlreadyExists):
        await adapter.create_snapshot(SNAPSHOT, OTHER)


async def test_create_snapshot_puts_only_after_not_found(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    puts: list[Any] = []

    async def get(*args: Any, **kwargs: Any) -> em.Snapshot:
        raise http_error(404, "ResourceNotFound", "get-1", ResourceNotFoundError)

    async def begin_create(rg: str, san: str, vg: str, name: str, body: em.Snapshot, **kwargs: Any) -> Poller:
        puts.append((rg, san, vg, name, body.as_dict()))
        return Poller(snapshot_model(SNAPSHOT, VOLUME))

    monkeypatch.setattr(adapter._san.volume_snapshots, "get", get)
    monkeypatch.setattr(adapter._san.volume_snapshots, "begin_create", begin_create)
    before = calls("snapshot.create", "Success")
    info = await adapter.create_snapshot(SNAPSHOT, VOLUME)
    assert info.id == SNAPSHOT
    assert puts == [
        ("rg", "san", "vg", "snapshot-1", {"properties": {"creationData": {"sourceId": VOLUME.arm_id}}})
    ]
    assert calls("snapshot.create", "Success") == before + 1


async def test_errors_carry_and_log_the_request_id(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def get(*args: Any, **kwargs: Any) -> em.Snapshot:
        raise http_error(429, "TooManyRequests", "req-429")

    monkeypatch.setattr(adapter._san.volume_snapshots, "get", get)
    before = calls("snapshot.get", "Throttled")
    with (
        caplog.at_level(logging.INFO, logger="elasticsan_snapshotter.azure.client"),
        pytest.raises(Throttled) as caught,
    ):
        await adapter.get_snapshot(SNAPSHOT)
    assert caught.value.request_id == "req-429"
    assert calls("snapshot.get", "Throttled") == before + 1
    assert any("req-429" in r.getMessage() and "Throttled" in r.getMessage() for r in caplog.records)


async def test_an_unreadable_5xx_answer_is_transient_not_unexpected(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the SDK does with a plain-text 500 (a proxy's or a crashed server's page) on a GET:
    # it fails to parse the body as an ARM error and lets the JSON error out.
    async def get(*args: Any, **kwargs: Any) -> em.Volume:
        seen_response(500, "req-500")
        return json.loads("500 Internal Server Error")  # type: ignore[no-any-return]

    monkeypatch.setattr(adapter._san.volumes, "get", get)
    before = calls("volume.get", "Transient")
    with pytest.raises(Transient) as caught:
        await adapter.get_volume(VOLUME)
    assert caught.value.retryable
    assert caught.value.request_id == "req-500"
    assert "500" in str(caught.value)
    assert calls("volume.get", "Transient") == before + 1


async def test_an_unreadable_success_answer_stays_unexpected(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get(*args: Any, **kwargs: Any) -> em.Volume:
        seen_response(200, "req-200")
        return json.loads("not json")  # type: ignore[no-any-return]

    monkeypatch.setattr(adapter._san.volumes, "get", get)
    with pytest.raises(ValueError, match="Expecting value"):
        await adapter.get_volume(VOLUME)


async def test_success_logs_the_request_id_of_the_last_response(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def begin_delete(*args: Any, **kwargs: Any) -> Poller:
        seen_response(202, "req-delete")
        return Poller()

    monkeypatch.setattr(adapter._san.volume_snapshots, "begin_delete", begin_delete)
    with caplog.at_level(logging.INFO, logger="elasticsan_snapshotter.azure.client"):
        await adapter.delete_snapshot(SNAPSHOT)
    assert any("req-delete" in r.getMessage() and "Success" in r.getMessage() for r in caplog.records)


async def test_deleting_what_is_gone_succeeds(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def begin_delete(*args: Any, **kwargs: Any) -> Poller:
        raise http_error(404, "ResourceNotFound", "req-404", ResourceNotFoundError)

    monkeypatch.setattr(adapter._san.volume_snapshots, "begin_delete", begin_delete)
    before = calls("snapshot.delete", "NotFound")
    await adapter.delete_snapshot(SNAPSHOT)
    assert calls("snapshot.delete", "NotFound") == before + 1


async def test_volume_delete_refuses_to_take_snapshots_unasked(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers: list[str] = []

    class Pages:
        def __init__(self, items: list[em.Snapshot]) -> None:
            self._items = items

        def __aiter__(self) -> AsyncIterator[em.Snapshot]:
            async def walk() -> AsyncIterator[em.Snapshot]:
                for item in self._items:
                    yield item

            return walk()

    def listing(*args: Any, filter: str | None = None, **kwargs: Any) -> Pages:
        assert filter == "volumeName eq vol"
        return Pages([snapshot_model(SNAPSHOT, VOLUME)])

    async def begin_delete(*args: Any, x_ms_delete_snapshots: str, **kwargs: Any) -> Poller:
        headers.append(x_ms_delete_snapshots)
        return Poller()

    monkeypatch.setattr(adapter._san.volume_snapshots, "list_by_volume_group", listing)
    monkeypatch.setattr(adapter._san.volumes, "begin_delete", begin_delete)
    with pytest.raises(VolumeHasSnapshots):
        await adapter.delete_volume(VOLUME, delete_snapshots=False)
    assert headers == []
    await adapter.delete_volume(VOLUME, delete_snapshots=True)
    assert headers == ["true"]


def test_the_response_hook_counts_throttling() -> None:
    before = (
        metrics.REGISTRY.get_sample_value("elasticsan_snapshotter_azure_throttled_responses_total") or 0.0
    )
    seen_response(429, "req-x")
    seen_response(200, "req-y")
    after = metrics.REGISTRY.get_sample_value("elasticsan_snapshotter_azure_throttled_responses_total")
    assert after == before + 1


async def test_missing_resources_raise_not_found(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get(*args: Any, **kwargs: Any) -> Any:
        raise http_error(404, "ParentResourceNotFound", "r", ResourceNotFoundError)

    monkeypatch.setattr(adapter._san.volumes, "get", get)
    with pytest.raises(NotFound):
        await adapter.get_volume(VOLUME)


@pytest.mark.parametrize(("existing", "expected"), [(1, "CapacityExhausted"), (200, "LimitReached")])
async def test_an_ambiguous_quota_answer_is_decided_by_the_snapshot_count(
    adapter: ElasticSanAzure, monkeypatch: pytest.MonkeyPatch, existing: int, expected: str
) -> None:
    async def get(*args: Any, **kwargs: Any) -> em.Snapshot:
        raise http_error(404, "ResourceNotFound", "g", ResourceNotFoundError)

    async def begin_create(*args: Any, **kwargs: Any) -> Poller:
        raise http_error(409, "QuotaExceeded", "q")

    class Pages:
        def __aiter__(self) -> AsyncIterator[em.Snapshot]:
            async def walk() -> AsyncIterator[em.Snapshot]:
                for n in range(existing):
                    yield snapshot_model(GROUP.snapshot(f"s{n}"), VOLUME)

            return walk()

    monkeypatch.setattr(adapter._san.volume_snapshots, "get", get)
    monkeypatch.setattr(adapter._san.volume_snapshots, "begin_create", begin_create)
    monkeypatch.setattr(adapter._san.volume_snapshots, "list_by_volume_group", lambda *a, **k: Pages())
    with pytest.raises(SnapshotterError) as caught:
        await adapter.create_snapshot(SNAPSHOT, VOLUME)
    assert caught.value.reason == expected
    assert caught.value.request_id == "q"


def test_the_compute_sdk_loads_only_when_an_export_needs_it() -> None:
    # A fresh interpreter: whether the module is loaded depends on nothing else imported before.
    code = (
        "import sys\n"
        "from elasticsan_snapshotter.azure.client import ElasticSanAzure\n"
        "from elasticsan_snapshotter.azure.config import AzureConfig\n"
        "azure = ElasticSanAzure(AzureConfig(subscription_id='s'), credential=object())\n"
        "print('azure.mgmt.compute' in sys.modules)\n"
        "azure._compute_in('s')\n"
        "print('azure.mgmt.compute' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
