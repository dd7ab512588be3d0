"""The pure parts of the exporter: spec parsing, status shape, conditions, names, tags, coverage."""

from __future__ import annotations

from typing import Any

import pytest

from elasticsan_snapshotter.domain.decisions import SnapshotFailed
from elasticsan_snapshotter.domain.errors import InvalidRequest
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId, VolumeGroupId, VolumeId
from elasticsan_snapshotter.domain.parameters import parse_storage_class
from elasticsan_snapshotter.domain.ports import DiskSnapshotInfo, SnapshotInfo
from elasticsan_snapshotter.kubernetes.export_guard import ExportGuard, guard_export_name
from elasticsan_snapshotter.kubernetes.export_spec import export_tags, parse_spec
from elasticsan_snapshotter.kubernetes.export_status import conditions_for, progress_percent, status_patch
from elasticsan_snapshotter.kubernetes.stores import Store

SUB = "00000000-0000-0000-0000-000000000001"
GROUP = VolumeGroupId(ElasticSanId(SUB, "rg", "san1"), "vg1")
SNAPSHOT = GROUP.snapshot("snapshot-3f2504e0-4f89-11d3-9a0c-0305e82c3301")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def export(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "e", "namespace": "ns", "generation": 1}, "spec": spec}


def test_spec_defaults_and_source_kinds() -> None:
    spec = parse_spec(export({"source": {"volumeSnapshotName": "snap"}}))
    assert spec.volume_snapshot == "snap"
    assert (spec.sku, spec.incremental, spec.deletion_policy, spec.target_name) == (
        "Standard_LRS",
        False,
        "Retain",
        None,
    )
    assert spec.describe_source() == "VolumeSnapshot snap"
    assert parse_spec(export({"source": {"snapshotHandle": "rg#san#vg#s"}})).describe_source() == (
        "snapshot rg#san#vg#s"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {}}, "exactly one"),
        ({"source": {"volumeSnapshotName": "a", "snapshotHandle": "rg#s#v#n"}}, "exactly one"),
        ({"source": {"volumeSnapshotName": "a"}, "target": {"sku": "Ultra"}}, "sku"),
        ({"source": {"volumeSnapshotName": "a"}, "deletionPolicy": "Keep"}, "deletionPolicy"),
        ({"source": {"volumeSnapshotName": "a"}, "target": {"name": "bad.name"}}, "managed-disk snapshot"),
    ],
)
def test_spec_mistakes_are_final(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_spec(export(spec))


def test_conditions_follow_the_phase_and_keep_transition_times() -> None:
    exporting = conditions_for("Exporting", "ExportStarted", "m", generation=1, now=T0)
    assert [(c["type"], c["status"]) for c in exporting] == [("Ready", "False"), ("Progressing", "True")]
    assert all(c["observedGeneration"] == 1 for c in exporting)
    done = conditions_for("Succeeded", "ExportSucceeded", "ok", generation=2, previous=exporting, now=T1)
    by_type = {c["type"]: c for c in done}
    assert by_type["Ready"] == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 2,
        "lastTransitionTime": T1,
        "reason": "ExportSucceeded",
        "message": "ok",
    }
    assert by_type["Progressing"]["status"] == "False"
    failed = conditions_for("Failed", "InvalidRequest", "no", generation=1, previous=exporting, now=T1)
    ready = next(c for c in failed if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", T0)


def test_status_patch_writes_only_changes() -> None:
    first = status_patch({}, "Exporting", "ExportStarted", "m", generation=1, now=T0, progressPercent=0)
    assert first["phase"] == "Exporting"
    assert first["progressPercent"] == 0
    assert "error" not in first
    assert len(first["conditions"]) == 2
    assert (
        status_patch(first, "Exporting", "ExportStarted", "m", generation=1, now=T1, progressPercent=0) == {}
    )
    progress = status_patch(
        first, "Exporting", "ExportStarted", "m", generation=1, now=T1, progressPercent=40
    )
    assert progress == {"progressPercent": 40}


def test_failure_sets_the_error_once_and_success_clears_it() -> None:
    current = status_patch({}, "Exporting", "ExportStarted", "m", generation=1, now=T0, progressPercent=3)
    failed = status_patch(
        current, "Failed", "InvalidRequest", "too big", generation=1, now=T1, progressPercent=None
    )
    assert failed["error"] == {"time": T1, "message": "too big"}
    assert failed["progressPercent"] is None
    current = {**current, **failed}
    assert status_patch(current, "Failed", "InvalidRequest", "too big", generation=1, now=T1) == {}
    recovered = status_patch(current, "Succeeded", "ExportSucceeded", "ok", generation=1, now=T1)
    assert recovered["error"] is None


def disk(percent: float, state: str = "Succeeded", error: str | None = None) -> DiskSnapshotInfo:
    return DiskSnapshotInfo(
        id=DiskSnapshotId(SUB, "rg", "d"),
        location="westeurope",
        provisioning_state=state,
        completion_percent=percent,
        copy_error=error,
    )


def test_progress_is_whole_percent_and_100_only_when_done() -> None:
    assert progress_percent(disk(0.0)) == (False, 0)
    assert progress_percent(disk(41.7)) == (False, 41)
    assert progress_percent(disk(100.0, state="Updating")) == (False, 99)
    assert progress_percent(disk(100.0)) == (True, 100)
    with pytest.raises(SnapshotFailed):
        progress_percent(disk(10.0, error="CopyFailed: boom"))


def test_tags_name_the_export_and_source_and_user_tags_win() -> None:
    spec = parse_spec(export({"source": {"volumeSnapshotName": "snap"}, "target": {"tags": {"team": "a"}}}))
    tags = export_tags("ns", "e", spec, SNAPSHOT)
    assert tags == {
        "elasticsan-snapshotter-export": "ns/e",
        "elasticsan-snapshotter-source": "VolumeSnapshot snap",
        "elasticsan-snapshotter-source-snapshot": SNAPSHOT.name,
        "team": "a",
    }
    assert all("/" not in key for key in tags)


def test_guard_export_names_are_dns_names_unique_per_snapshot() -> None:
    name = guard_export_name(SNAPSHOT)
    assert name.startswith(f"keep-{SNAPSHOT.name}-")
    assert len(name) <= 63
    twin = VolumeGroupId(ElasticSanId(SUB, "rg", "san2"), "vg1").snapshot(SNAPSHOT.name)
    assert guard_export_name(twin) != name
    odd = GROUP.snapshot("Nightly_Backup.2026")
    assert guard_export_name(odd).startswith("keep-")
    assert len(guard_export_name(odd)) == len("keep-") + 16
    assert guard_export_name(odd) == guard_export_name(GROUP.snapshot("nightly_backup.2026"))
    long = GROUP.snapshot("a" * 80)
    assert len(guard_export_name(long)) <= 63


def test_guard_coverage_from_the_storage_class_or_the_snapshot_class() -> None:
    contents, classes = Store(), Store()
    contents.apply(
        "ADDED",
        {
            "metadata": {"name": "c1"},
            "spec": {"volumeSnapshotClassName": "protecting", "source": {"volumeHandle": "x"}},
            "status": {"snapshotHandle": SNAPSHOT.handle(SUB)},
        },
    )
    classes.apply(
        "ADDED", {"metadata": {"name": "protecting"}, "parameters": {"exportBeforeVolumeDelete": "true"}}
    )
    guard = ExportGuard(
        subscription=SUB,
        api=None,  # type: ignore[arg-type]  # coverage makes no API calls
        recorder=None,  # type: ignore[arg-type]
        exports=Store(),
        contents=contents,
        snapshot_classes=classes,
    )
    volume = VolumeId(GROUP, "pvc-1")
    taken = SnapshotInfo(
        id=SNAPSHOT, source_volume=volume, source_volume_size_gib=10, provisioning_state="Succeeded"
    )
    other = SnapshotInfo(
        id=GROUP.snapshot("elsewhere"),
        source_volume=volume,
        source_volume_size_gib=10,
        provisioning_state="Succeeded",
    )
    assert guard.covered(taken, parse_storage_class({}))
    assert not guard.covered(other, parse_storage_class({}))
    assert guard.covered(other, parse_storage_class({"exportBeforeVolumeDelete": "True"}))
    assert not guard.covered(other, parse_storage_class({"exportBeforeVolumeDelete": "false"}))
