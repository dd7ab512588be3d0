"""EventRecorder: one Event per change of (reason, message) per object and type, posted through KubeApi."""

from __future__ import annotations

from typing import Any

from api_server import api_server, failure, ok

from elasticsan_snapshotter.domain.errors import Throttled
from elasticsan_snapshotter.kubernetes.events import COMPONENT, NORMAL, WARNING, EventRecorder

EVENTS = "/api/v1/namespaces/team/events"
CLUSTER_EVENTS = "/api/v1/namespaces/default/events"

CLAIM: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "data", "namespace": "team", "uid": "uid-claim", "resourceVersion": "7"},
}
CONTENT: dict[str, Any] = {
    "apiVersion": "snapshot.storage.k8s.io/v1",
    "kind": "VolumeSnapshotContent",
    "metadata": {"name": "snapcontent-1", "uid": "uid-content"},
}


async def test_an_event_names_its_object_and_the_component() -> None:
    async with api_server() as (server, api):
        server.answer("POST", EVENTS, ok({}, 201))
        assert await EventRecorder(api).record(CLAIM, WARNING, "ProvisioningFailed", "x" * 2000)
        [seen] = server.seen
        event = seen.body
        assert event["metadata"] == {"generateName": "data.", "namespace": "team"}
        assert event["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": "data",
            "namespace": "team",
            "uid": "uid-claim",
            "resourceVersion": "7",
        }
        assert (event["type"], event["reason"], event["count"]) == (WARNING, "ProvisioningFailed", 1)
        assert event["message"] == "x" * 1024
        assert event["source"] == {"component": COMPONENT}
        assert event["reportingComponent"] == COMPONENT
        assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_a_cluster_scoped_object_gets_its_events_in_default() -> None:
    async with api_server() as (server, api):
        server.answer("POST", CLUSTER_EVENTS, ok({}, 201))
        assert await EventRecorder(api).record(CONTENT, NORMAL, "SnapshotReady", "ready")
        [seen] = server.seen
        assert seen.path == CLUSTER_EVENTS
        assert "namespace" not in seen.body["involvedObject"]


async def test_repeats_are_posted_once_and_each_change_again() -> None:
    async with api_server() as (server, api):
        server.answer("POST", EVENTS, ok({}, 201))
        recorder = EventRecorder(api)
        posted = [
            await recorder.record(CLAIM, WARNING, "Waiting", "snapshot not ready"),
            await recorder.record(CLAIM, WARNING, "Waiting", "snapshot not ready"),
            await recorder.record(CLAIM, NORMAL, "Waiting", "snapshot not ready"),  # other type
            await recorder.record(CLAIM, WARNING, "Waiting", "snapshot deleted"),
            await recorder.record(CLAIM, WARNING, "Waiting", "snapshot not ready"),
        ]
        assert posted == [True, False, True, True, True]
        assert [(s.body["type"], s.body["message"]) for s in server.seen] == [
            (WARNING, "snapshot not ready"),
            (NORMAL, "snapshot not ready"),
            (WARNING, "snapshot deleted"),
            (WARNING, "snapshot not ready"),
        ]


async def test_forget_lets_the_same_event_post_again() -> None:
    async with api_server() as (server, api):
        server.answer("POST", EVENTS, ok({}, 201))
        recorder = EventRecorder(api)
        assert await recorder.record(CLAIM, WARNING, "Waiting", "m")
        recorder.forget("uid-claim")
        assert await recorder.record(CLAIM, WARNING, "Waiting", "m")
        assert len(server.seen) == 2


async def test_a_failed_post_is_not_remembered_so_the_next_one_retries() -> None:
    async with api_server() as (server, api):
        server.answer("POST", EVENTS, failure(503, "ServiceUnavailable"), ok({}, 201))
        recorder = EventRecorder(api)
        assert not await recorder.record(CLAIM, WARNING, "Waiting", "m")
        assert await recorder.record(CLAIM, WARNING, "Waiting", "m")
        assert not await recorder.record(CLAIM, WARNING, "Waiting", "m")
        assert len(server.seen) == 2


async def test_an_error_is_posted_with_its_own_reason() -> None:
    async with api_server() as (server, api):
        server.answer("POST", EVENTS, ok({}, 201))
        assert await EventRecorder(api).error(CLAIM, Throttled("Azure is busy", retry_after=5))
        [seen] = server.seen
        assert (seen.body["type"], seen.body["reason"], seen.body["message"]) == (
            WARNING,
            Throttled.reason,
            "Azure is busy",
        )
