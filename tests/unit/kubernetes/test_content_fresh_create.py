"""A create skips the lookup by name only when no earlier attempt can have sent it."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from harness import GROUP, Operator, dynamic_content, recording_fresh, seeded_azure, volume_snapshot

from elasticsan_snapshotter.kubernetes.resources import ANN_BEING_CREATED

VOLUME = GROUP.volume("vol1")


async def test_a_first_attempt_is_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    kube, azure = FakeKube(), seeded_azure()
    seen = recording_fresh(azure, monkeypatch)
    dynamic_content(kube, volume_snapshot(kube, "snap"), VOLUME)
    await Operator(kube, azure).settle()
    assert seen == [True]
    assert len(await azure.list_snapshots(GROUP)) == 1


async def test_an_attempt_after_a_crash_looks_the_name_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # The annotation is on: an earlier process may have sent the PUT before it died.
    kube, azure = FakeKube(), seeded_azure()
    seen = recording_fresh(azure, monkeypatch)
    dynamic_content(kube, volume_snapshot(kube, "snap"), VOLUME, annotations={ANN_BEING_CREATED: "yes"})
    await Operator(kube, azure).settle()
    assert seen == [False]
    assert len(await azure.list_snapshots(GROUP)) == 1
