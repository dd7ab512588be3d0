"""A 401 that persists after logging in again becomes a condition that clears itself."""

from __future__ import annotations

from fake_kube import FakeKube
from harness import GROUP, Operator, dynamic_content, seeded_azure, volume_snapshot

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain.errors import Unauthenticated
from elasticsan_snapshotter.health import CredentialHealth
from elasticsan_snapshotter.kubernetes.api import _translate
from elasticsan_snapshotter.kubernetes.resources import VOLUME_SNAPSHOT_CONTENT
from elasticsan_snapshotter.kubernetes.workqueue import Requeue


def failing_gauge(backend: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("elasticsan_snapshotter_credentials_failing", {"backend": backend})
        or 0.0
    )


def test_a_refusal_after_a_fresh_login_is_unauthenticated_not_transient() -> None:
    error = _translate(401, '{"kind":"Status","reason":"Unauthorized"}', "GET", "/api/v1/x", None)
    assert type(error) is Unauthenticated


def test_the_condition_needs_refusals_in_a_row_and_clears_on_the_first_success() -> None:
    health = CredentialHealth(limit=3)
    health.refused("test-backend", "no")
    health.refused("test-backend", "no")
    health.worked("test-backend")
    health.refused("test-backend", "no")
    health.refused("test-backend", "no")
    assert health.failing() == {}
    health.refused("test-backend", "still no")
    assert health.failing() == {"test-backend": "still no"}
    assert failing_gauge("test-backend") == 1.0
    health.refused("test-backend", "and again")
    health.worked("test-backend")
    assert health.failing() == {}
    assert failing_gauge("test-backend") == 0.0


async def test_refused_credentials_never_become_a_contents_final_error() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs = volume_snapshot(kube, "snap")
    name = dynamic_content(kube, vs, GROUP.volume("vol1"))["metadata"]["name"]
    azure.fail_next("create_snapshot", Unauthenticated("token expired"), times=None)
    operator = Operator(kube, azure)
    operator.deliver_all()
    outcome = await operator.reconcile("contents", name)
    assert outcome == Requeue(minimum=30.0)
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    assert "error" not in (body.get("status") or {})
    assert kube.events_about(name, "Unauthenticated")
