"""KubeApi over HTTP: what it sends, how it pages, logs in again, and turns answers into domain errors."""

from __future__ import annotations

import pytest
from aiohttp import web
from api_server import Seen, api_server, failure, ok

from elasticsan_snapshotter.domain.errors import NotFound, Throttled, Transient, Unauthenticated
from elasticsan_snapshotter.kubernetes.api import JSON_PATCH, MERGE_PATCH, Conflict, KubeApi
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME, VOLUME_SNAPSHOT

SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces/team/volumesnapshots"
PV = "/api/v1/persistentvolumes/pv-1"


async def test_requests_carry_the_login_the_agent_and_json() -> None:
    async with api_server() as (server, api):
        server.answer("POST", SNAPSHOTS, ok({"metadata": {"name": "s1", "uid": "u1"}}, 201))
        created = await api.create(VOLUME_SNAPSHOT, {"metadata": {"name": "s1"}}, "team")
        assert created["metadata"]["uid"] == "u1"
        [seen] = server.seen
        assert seen.headers["Authorization"] == "Bearer token-1"
        assert seen.headers["User-Agent"] == "tests/1"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.body == {"metadata": {"name": "s1"}}
        # One login serves every later request.
        await api.get(VOLUME_SNAPSHOT, "s1", "team")
        assert server.logins == 1


async def test_get_of_a_missing_object_is_none_and_delete_of_one_succeeds() -> None:
    async with api_server() as (server, api):
        assert await api.get(PERSISTENT_VOLUME, "pv-1") is None
        await api.delete(PERSISTENT_VOLUME, "pv-1", uid="uid-1")
        [_, delete] = server.seen
        assert (delete.method, delete.path) == ("DELETE", PV)
        assert delete.body == {"preconditions": {"uid": "uid-1"}}


async def test_list_follows_continue_tokens_and_passes_the_selector() -> None:
    async with api_server() as (server, api):

        def page(seen: Seen) -> web.Response:
            token = seen.query.get("continue")
            if token is None:
                return web.json_response({"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "p2"}})
            assert token == "p2"
            return web.json_response({"items": [{"n": 3}], "metadata": {}})

        server.answer("GET", SNAPSHOTS, page)
        items = await api.list(VOLUME_SNAPSHOT, "team", label_selector="app=db")
        assert items == [{"n": 1}, {"n": 2}, {"n": 3}]
        first, second = server.seen
        assert first.query == {"limit": "500", "labelSelector": "app=db"}
        assert second.query == {"limit": "500", "labelSelector": "app=db", "continue": "p2"}


async def test_patch_sends_its_content_type_to_the_subresource() -> None:
    async with api_server() as (server, api):
        path = SNAPSHOTS + "/s1/status"
        server.answer("PATCH", path, ok({"status": {"readyToUse": True}}))
        await api.patch(VOLUME_SNAPSHOT, "s1", {"status": {"readyToUse": True}}, "team", subresource="status")
        assert server.seen[0].headers["Content-Type"] == MERGE_PATCH
        assert server.seen[0].body == {"status": {"readyToUse": True}}


async def test_a_401_logs_in_again_once_with_the_new_token() -> None:
    async with api_server() as (server, api):
        server.tokens = ["expired", "fresh"]
        server.answer("GET", PV, failure(401, "Unauthorized"), ok({"metadata": {"name": "pv-1"}}))
        assert await api.get(PERSISTENT_VOLUME, "pv-1") == {"metadata": {"name": "pv-1"}}
        assert [s.headers["Authorization"] for s in server.seen] == ["Bearer expired", "Bearer fresh"]
        assert server.logins == 2


async def test_a_second_401_is_unauthenticated() -> None:
    """Refused again after a fresh login: retryable (credentials may be rotating), never final."""
    async with api_server() as (server, api):
        server.answer("GET", PV, failure(401, "Unauthorized"))
        with pytest.raises(Unauthenticated, match="unauthorized after logging in again"):
            await api.get(PERSISTENT_VOLUME, "pv-1")
        assert server.logins == 2
        assert len(server.seen) == 2


async def test_answers_become_domain_errors() -> None:
    async with api_server() as (server, api):
        server.answer("GET", PV, failure(429, "TooManyRequests", headers={"Retry-After": "3"}))
        with pytest.raises(Throttled) as throttled:
            await api.request("GET", PV)
        assert throttled.value.retry_after == 3.0
        server.answer("GET", PV, failure(503, "ServiceUnavailable", "etcd is slow"))
        with pytest.raises(Transient, match="etcd is slow"):
            await api.request("GET", PV)
        server.answer("GET", PV, failure(404, "NotFound"))
        with pytest.raises(NotFound, match=f"GET {PV}"):
            await api.request("GET", PV)


async def test_an_unreachable_server_is_transient() -> None:
    async with api_server() as (server, _):
        url = server.url
    api = KubeApi(lambda: server.login(), timeout=5.0)
    server.url = url  # the server above is closed now: nothing listens there
    try:
        with pytest.raises(Transient, match="ClientConnectorError"):
            await api.request("GET", PV)
    finally:
        await api.close()


def finalizers(*names: str) -> dict[str, object]:
    return {"metadata": {"name": "pv-1", "finalizers": list(names)}}


async def test_remove_finalizer_tests_its_index_and_rereads_a_stale_object() -> None:
    async with api_server() as (server, api):
        # The cached object is stale: someone added a finalizer in front of ours. kube-apiserver
        # answers a JSON patch whose `test` fails with a bare 422.
        server.answer(
            "PATCH", PV, failure(422, "Invalid", "the test operation failed"), ok(finalizers("other"))
        )
        server.answer("GET", PV, ok(finalizers("first", "ours", "other")))
        assert await api.remove_finalizer(PERSISTENT_VOLUME, finalizers("ours", "other"), "ours")
        stale, fresh = server.requests("PATCH", PV)
        assert stale.headers["Content-Type"] == JSON_PATCH
        assert stale.body == [
            {"op": "test", "path": "/metadata/finalizers/0", "value": "ours"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]
        assert fresh.body[0] == {"op": "test", "path": "/metadata/finalizers/1", "value": "ours"}


async def test_remove_finalizer_of_an_absent_finalizer_or_object_is_false() -> None:
    async with api_server() as (server, api):
        assert not await api.remove_finalizer(PERSISTENT_VOLUME, finalizers("other"), "ours")
        assert server.seen == []
        assert not await api.remove_finalizer(PERSISTENT_VOLUME, finalizers("ours"), "ours")  # 404
        server.answer("PATCH", PV, failure(409, "Conflict"))
        server.answer("GET", PV, ok(finalizers("ours")))
        with pytest.raises(Conflict, match="kept changing"):
            await api.remove_finalizer(PERSISTENT_VOLUME, finalizers("ours"), "ours")
        assert len(server.requests("PATCH", PV)) == 1 + 1 + 4  # the 404, then five tries
