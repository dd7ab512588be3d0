"""ElasticSanSnapshotExport end to end: the CRD in the real API server, the operator, the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from export_scenario import (
    GROUP,
    PLURAL,
    REPO_ROOT,
    VERSION,
    Exports,
    disk_snapshot,
    disk_snapshots,
    finalizers,
    install_crd,
    kubectl_apply,
    same_arm_id,
)
from kubernetes import client as k8s
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, unique_name, wait_for

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import LocalCluster, discover
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

FIN_EXPORT_SOURCE = "elasticsan.snapshotter.dev/export-source-protection"
LABEL_VOLUME = "elasticsan.snapshotter.dev/exported-before-delete-of"
PUT_DISK_SNAPSHOT = {"method": "PUT", "kind": "diskSnapshots"}
StartOperator = Callable[..., OperatorProcess]


@pytest.fixture(scope="module")
def export_crd(api_client: k8s.ApiClient) -> None:
    install_crd(api_client)


@pytest.fixture(scope="module")
def exporter(export_crd: None, start_operator: StartOperator) -> OperatorProcess:
    """The operator, started once the CRD is served."""
    return start_operator()


@pytest.fixture
def exports(api_client: k8s.ApiClient) -> Exports:
    return Exports(api_client)


@pytest.fixture
def slow_exports(emulator: EmulatorProcess) -> Iterator[Callable[[float], None]]:
    """Make new exports in the emulator take longer; restored afterwards."""
    before = float(emulator.admin.update_settings()["exportSeconds"])
    yield lambda seconds: emulator.admin.update_settings(exportSeconds=seconds) and None
    emulator.admin.update_settings(exportSeconds=before)


def provisioned_claim(kube: Kube, namespace: str, san_id: str, name: str = "data", **parameters: str) -> str:
    """A claim on our StorageClass, provisioned as a new empty Elastic SAN volume; returns the class."""
    storage_class = unique_name("esan")
    kube.create_storage_class(storage_class, elasticSanId=san_id, volumeGroup=VOLUME_GROUP, **parameters)
    kube.create_claim(namespace, name, storage_class, "10Gi")
    kube.wait_claim_bound(namespace, name)
    return storage_class


def ready_snapshot(kube: Kube, namespace: str, name: str, claim: str, snapshot_class: str) -> dict[str, Any]:
    kube.create_snapshot(namespace, name, claim, snapshot_class=snapshot_class)
    return kube.wait_snapshot_ready(namespace, name)


def sdk_snapshot(esan: ElasticSanMgmtClient, volume: Any) -> Any:
    """An Elastic SAN snapshot made outside Kubernetes."""
    return esan.volume_snapshots.begin_create(
        RESOURCE_GROUP,
        SAN,
        VOLUME_GROUP,
        unique_name("snap"),
        {"properties": {"creationData": {"sourceId": volume.id}}},
    ).result()


def test_bad_specs_are_refused_by_the_api_server(
    export_crd: None, cluster: LocalCluster, exports: Exports, namespace: str
) -> None:
    kubectl = discover().binary("kubectl")

    def manifest(name: str, spec: str) -> str:
        return (
            "apiVersion: elasticsan.snapshotter.dev/v1alpha1\nkind: ElasticSanSnapshotExport\n"
            f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
        )

    refused = {
        "two sources": (
            "  source:\n    volumeSnapshotName: a\n    snapshotHandle: rg#san#vg#snap\n",
            "exactly one of volumeSnapshotName",
        ),
        "no source": ("  source: {}\n", "exactly one of volumeSnapshotName"),
        "bad handle": ("  source:\n    snapshotHandle: not-a-handle\n", "snapshotHandle must be the ARM ID"),
        "bad target name": (
            "  source:\n    volumeSnapshotName: a\n  target:\n    name: 'has spaces-'\n",
            "spec.target.name must be 1-80 letters",
        ),
        "long target name": (
            f"  source:\n    volumeSnapshotName: a\n  target:\n    name: {'x' * 81}\n",
            "spec.target.name: Too long",
        ),
        "sku": (
            "  source:\n    volumeSnapshotName: a\n  target:\n    sku: Ultra_LRS\n",
            'Unsupported value: "Ultra_LRS"',
        ),
        "deletion policy": (
            "  source:\n    volumeSnapshotName: a\n  deletionPolicy: Keep\n",
            'Unsupported value: "Keep"',
        ),
        "tag name": (
            "  source:\n    volumeSnapshotName: a\n  target:\n    tags:\n      a/b: c\n",
            "Azure tag names",
        ),
    }
    for case, (spec, expected) in refused.items():
        result = kubectl_apply(kubectl, cluster.kubeconfig, manifest("bad", spec))
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"{case}: kubectl apply was accepted:\n{output}"
        assert expected in output, f"{case}: kubectl apply said:\n{output}"
        assert exports.get(namespace, "bad") is None

    # A valid spec is accepted, defaults filled in; then source and target are immutable.
    created = kubectl_apply(
        kubectl, cluster.kubeconfig, manifest("ok", "  source:\n    volumeSnapshotName: a\n")
    )
    assert created.returncode == 0, created.stdout + created.stderr
    export = exports.get(namespace, "ok")
    assert export is not None
    assert export["spec"]["target"] == {"sku": "Standard_LRS", "incremental": False}
    assert export["spec"]["deletionPolicy"] == "Retain"
    for case, spec, expected in (
        ("source", "  source:\n    volumeSnapshotName: b\n", "spec.source is immutable"),
        (
            "target",
            "  source:\n    volumeSnapshotName: a\n  target:\n    name: other\n",
            "spec.target is immutable",
        ),
    ):
        result = kubectl_apply(kubectl, cluster.kubeconfig, manifest("ok", spec))
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"changing {case} was accepted:\n{output}"
        assert expected in output, f"changing {case}: kubectl apply said:\n{output}"
    changed = kubectl_apply(
        kubectl,
        cluster.kubeconfig,
        manifest("ok", "  source:\n    volumeSnapshotName: a\n  deletionPolicy: Delete\n"),
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr


def test_export_from_volume_snapshot_then_restore_after_the_volume_is_gone(
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
    slow_exports: Callable[[float], None],
) -> None:
    storage_class = provisioned_claim(kube, namespace, san_id, deleteSnapshotsWithVolume="true")
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Delete")
    vs = ready_snapshot(kube, namespace, "snap", "data", snapshot_class)
    esan_snapshot_name = f"snapshot-{vs['metadata']['uid']}"
    slow_exports(4)
    emulator.admin.reset_counters()

    exports.create(namespace, "keep", volume_snapshot="snap")
    protected_while_running = False
    deadline = time.monotonic() + 60
    while exports.phase(namespace, "keep") != "Exporting":
        assert time.monotonic() < deadline, exports.get(namespace, "keep")
        time.sleep(0.1)
    protected_while_running = FIN_EXPORT_SOURCE in finalizers(kube.snapshot(namespace, "snap"))
    export, seen = exports.follow(namespace, "keep")

    status = export["status"]
    assert status["phase"] == "Succeeded", status
    progress = [p for phase, p in seen if phase == "Exporting"]
    assert progress[0] == 0, seen
    assert any(0 < p < 100 for p in progress), seen
    assert progress == sorted(progress), seen
    assert seen[-1] == ("Succeeded", 100), seen
    subscription = emulator.info.subscription_id
    disk_id = (
        f"/subscriptions/{subscription}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute"
        f"/snapshots/esexport-{namespace}_keep"
    )
    assert status["diskSnapshotId"] == disk_id
    assert status["sizeGiB"] == 10
    assert status["startTime"] <= status["completionTime"]
    assert "error" not in status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Progressing"]["status"] == "False"
    assert conditions["Ready"]["observedGeneration"] == export["metadata"]["generation"]

    esan_snapshot_id = esan.volume_snapshots.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, esan_snapshot_name).id
    assert same_arm_id(status["sourceSnapshotId"], esan_snapshot_id)
    disk = disk_snapshot(emulator, disk_id)
    assert disk is not None
    assert disk["properties"]["creationData"]["createOption"] == "CopyFromSanSnapshot"
    assert same_arm_id(disk["properties"]["creationData"]["elasticSanResourceId"], esan_snapshot_id)
    assert disk["properties"]["completionPercent"] == 100.0
    assert disk["sku"]["name"] == "Standard_LRS"
    assert disk["tags"]["elasticsan-snapshotter-export"] == f"{namespace}/keep"
    assert emulator.admin.count(**PUT_DISK_SNAPSHOT) == 1

    assert protected_while_running, "the source VolumeSnapshot had no export finalizer while exporting"
    wait_for(
        "the source VolumeSnapshot to be released",
        lambda: FIN_EXPORT_SOURCE not in finalizers(kube.snapshot(namespace, "snap")),
        timeout=10,
    )
    reasons = {e.reason for e in kube.events(namespace, "keep")}
    assert {"ExportStarted", "ExportSucceeded"} <= reasons, reasons

    # The source volume goes, with its Elastic SAN snapshot (deleteSnapshotsWithVolume).
    pv_name = kube.core.read_namespaced_persistent_volume_claim("data", namespace).spec.volume_name
    volume_name = pv_name  # provisioned volumes are named like their PV: pvc-<claim uid>
    kube.core.delete_namespaced_persistent_volume_claim("data", namespace)

    def volume_gone() -> bool:
        try:
            esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume_name)
        except ResourceNotFoundError:
            return True
        return False

    wait_for("the source volume to be deleted", volume_gone, timeout=60)
    with pytest.raises(ResourceNotFoundError):
        esan.volume_snapshots.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, esan_snapshot_name)

    # The exported data comes back: pre-provisioned content -> VolumeSnapshot -> claim.
    content = unique_name("from-disk")
    kube.create_content(content, disk_id, snapshot_namespace=namespace, snapshot_name="from-disk")
    kube.create_snapshot(namespace, "from-disk", content=content)
    kube.wait_snapshot_ready(namespace, "from-disk")
    kube.create_claim(namespace, "restored", storage_class, "10Gi", snapshot="from-disk")
    restored = kube.wait_claim_bound(namespace, "restored")
    new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{restored.metadata.uid}")
    assert new_volume.creation_data.create_source == "DiskSnapshot"
    assert same_arm_id(new_volume.creation_data.source_id, disk_id)
    assert new_volume.size_gi_b == 10

    # The chain goes on: the restored volume is snapshotted and exported in turn. The export is
    # applied together with its VolumeSnapshot and waits for it.
    kube.create_snapshot(namespace, "again", "restored", snapshot_class=snapshot_class)
    exports.create(namespace, "again", volume_snapshot="again")
    again, seen_again = exports.follow(namespace, "again")
    assert again["status"]["phase"] == "Succeeded", (again["status"], seen_again)
    phases = [phase for phase, _ in seen_again]
    if "Pending" in phases:  # when the operator looked before snapshot-controller bound the snapshot
        assert phases.index("Pending") < phases.index("Exporting"), seen_again
        assert "ExportPending" in {e.reason for e in kube.events(namespace, "again")}
    source = esan.volume_snapshots.get(
        RESOURCE_GROUP, SAN, VOLUME_GROUP, f"snapshot-{kube.snapshot(namespace, 'again')['metadata']['uid']}"
    )
    assert source.creation_data.source_id.rsplit("/", 1)[-1] == new_volume.name
    chained = disk_snapshot(emulator, again["status"]["diskSnapshotId"])
    assert chained is not None
    assert same_arm_id(chained["properties"]["creationData"]["elasticSanResourceId"], source.id)


def test_the_example_manifest_exports(
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
) -> None:
    manifest = yaml.safe_load((REPO_ROOT / "examples" / "export.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    provisioned_claim(kube, namespace, san_id)
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Delete")
    ready_snapshot(kube, namespace, manifest["spec"]["source"]["volumeSnapshotName"], "data", snapshot_class)

    exports.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    done = exports.wait_phase(namespace, manifest["metadata"]["name"], "Succeeded")

    disk = disk_snapshot(emulator, done["status"]["diskSnapshotId"])
    assert disk is not None
    assert disk["name"] == manifest["spec"]["target"]["name"]
    assert disk["properties"]["incremental"] is True
    assert disk["sku"]["name"] == "Standard_LRS"
    assert disk["tags"]["team"] == "storage"


def test_refusals_are_final_errors_before_any_azure_write(
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    exports: Exports,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    small = sdk_snapshot(esan, source_volume(10))
    other = sdk_snapshot(esan, source_volume(10))
    # A volume above 4 TiB needs a bigger SAN than the seed's 4 TiB.
    esan.elastic_sans.begin_update(RESOURCE_GROUP, SAN, {"properties": {"baseSizeTiB": 12}}).result()
    big_volume = source_volume(5 * 1024)
    big = sdk_snapshot(esan, big_volume)

    # The target name is taken first, by a successful export of another snapshot.
    exports.create(namespace, "first", handle=other.id, target={"name": "shared-name"})
    exports.wait_phase(namespace, "first", "Succeeded")
    emulator.admin.reset_counters()

    cases = {
        "too-big": ({"handle": big.id}, "4 TiB"),
        "other-region": ({"handle": small.id, "target": {"location": "eastus"}}, "same region"),
        "unknown-source": ({"volume_snapshot": "missing"}, "VolumeSnapshot"),
        "unknown-snapshot": (
            {"handle": f"{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#no-such-snapshot"},
            "does not exist",
        ),
        "name-taken": ({"handle": small.id, "target": {"name": "shared-name"}}, "already exists"),
    }
    for name, (kwargs, _) in cases.items():
        exports.create(namespace, name, **kwargs)
    for name, (_, expected) in cases.items():
        failed = exports.wait_phase(namespace, name, "Failed")
        status = failed["status"]
        assert expected in status["error"]["message"], (name, status)
        assert status["error"]["time"]
        assert "diskSnapshotId" not in status, (name, status)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False", (name, status)
        assert ready["message"] == status["error"]["message"]
        event = kube.wait_event(namespace, name, "ExportFailed")
        assert expected in event.message, (name, event.message)
    assert (
        "does not exist"
        in exports.wait_phase(namespace, "unknown-source", "Failed")["status"]["error"]["message"]
    )
    assert emulator.admin.count(**PUT_DISK_SNAPSHOT) == 0
    esan.volumes.begin_delete(
        RESOURCE_GROUP, SAN, VOLUME_GROUP, big_volume.name, x_ms_delete_snapshots="true"
    ).result()


@pytest.mark.parametrize("parameter_on", ["VolumeSnapshotClass", "StorageClass"])
def test_export_before_volume_delete(
    parameter_on: str,
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
) -> None:
    protect = {"exportBeforeVolumeDelete": "true"}
    provisioned_claim(kube, namespace, san_id, **(protect if parameter_on == "StorageClass" else {}))
    protecting = unique_name("esan-snap")
    kube.create_snapshot_class(
        protecting, "Delete", **(protect if parameter_on == "VolumeSnapshotClass" else {})
    )
    snaps = [ready_snapshot(kube, namespace, n, "data", protecting) for n in ("snap-a", "snap-b")]
    pv_name = kube.core.read_namespaced_persistent_volume_claim("data", namespace).spec.volume_name
    before = {d["id"].lower() for d in disk_snapshots(emulator)}

    kube.core.delete_namespaced_persistent_volume_claim("data", namespace)

    def pv_gone() -> bool:
        try:
            kube.core.read_persistent_volume(pv_name)
        except k8s.ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the volume to be exported and deleted", pv_gone, timeout=120)
    made = exports.list(namespace, f"{LABEL_VOLUME}={pv_name}")
    assert len(made) == 2, made
    assert all(e["status"]["phase"] == "Succeeded" for e in made), made
    expected = {f"snapshot-{vs['metadata']['uid']}" for vs in snaps}
    assert {e["status"]["sourceSnapshotId"].rsplit("/", 1)[-1] for e in made} == expected
    new_disks = [d for d in disk_snapshots(emulator) if d["id"].lower() not in before]
    assert len(new_disks) == 2
    assert {
        d["properties"]["creationData"]["elasticSanResourceId"].rsplit("/", 1)[-1] for d in new_disks
    } == expected
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, pv_name)
    reasons = [e.reason for e in kube.events("default", pv_name)]
    assert "SnapshotsExported" in reasons, reasons
    assert "VolumeDeleted" in reasons, reasons
    assert reasons.count("ExportCreated") == 2, reasons


def test_without_export_before_volume_delete_the_volume_stays(
    exporter: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
) -> None:
    provisioned_claim(kube, namespace, san_id)
    plain = unique_name("esan-snap")
    kube.create_snapshot_class(plain, "Delete")
    vs = ready_snapshot(kube, namespace, "snap", "data", plain)
    pv_name = kube.core.read_namespaced_persistent_volume_claim("data", namespace).spec.volume_name

    kube.core.delete_namespaced_persistent_volume_claim("data", namespace)

    event = kube.wait_event("default", pv_name, "VolumeHasSnapshots")
    assert f"snapshot-{vs['metadata']['uid']}" in event.message
    assert kube.core.read_persistent_volume(pv_name).status.phase == "Released"
    assert esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, pv_name).name == pv_name
    assert exports.list(namespace) == []


def test_deletion_policy_retain_and_delete(
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
) -> None:
    provisioned_claim(kube, namespace, san_id)
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Delete")
    ready_snapshot(kube, namespace, "snap", "data", snapshot_class)

    exports.create(namespace, "retained", volume_snapshot="snap", deletion_policy="Retain")
    exports.create(namespace, "deleted", volume_snapshot="snap", deletion_policy="Delete")
    retained = exports.wait_phase(namespace, "retained", "Succeeded")["status"]["diskSnapshotId"]
    deleted = exports.wait_phase(namespace, "deleted", "Succeeded")["status"]["diskSnapshotId"]
    assert retained != deleted
    assert disk_snapshot(emulator, retained) is not None
    assert disk_snapshot(emulator, deleted) is not None
    wait_for(
        "the source VolumeSnapshot to be released",
        lambda: FIN_EXPORT_SOURCE not in finalizers(kube.snapshot(namespace, "snap")),
        timeout=10,
    )

    exports.delete(namespace, "retained")
    exports.delete(namespace, "deleted")
    wait_for("both exports to go", lambda: not exports.list(namespace), timeout=60)
    assert disk_snapshot(emulator, retained) is not None
    assert disk_snapshot(emulator, deleted) is None


def test_transient_azure_faults_retry_without_failing(
    exporter: OperatorProcess,
    emulator: EmulatorProcess,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
) -> None:
    provisioned_claim(kube, namespace, san_id)
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Delete")
    ready_snapshot(kube, namespace, "snap", "data", snapshot_class)
    emulator.admin.reset_counters()
    # More throttled answers in a row than azure-core retries: the reconciler itself must retry.
    emulator.admin.set_faults("put:diskSnapshots:429:1:6")
    try:
        exports.create(namespace, "throttled", volume_snapshot="snap")
        export, seen = exports.follow(namespace, "throttled", timeout=90)
    finally:
        emulator.admin.clear_faults()

    assert export["status"]["phase"] == "Succeeded", export["status"]
    assert "Failed" not in {phase for phase, _ in seen}, seen
    assert "error" not in export["status"]
    assert emulator.admin.count(method="PUT", kind="diskSnapshots", status=429) == 6
    assert emulator.admin.count(method="PUT", kind="diskSnapshots", status=202) == 1
    warnings = [e for e in kube.events(namespace, "throttled") if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["Throttled"], [(e.reason, e.message) for e in warnings]
    named = [d for d in disk_snapshots(emulator) if d["name"] == f"esexport-{namespace}_throttled"]
    assert len(named) == 1


def test_operator_killed_mid_export_resumes_the_same_disk_snapshot(
    exporter: OperatorProcess,
    start_operator: StartOperator,
    emulator: EmulatorProcess,
    kube: Kube,
    exports: Exports,
    namespace: str,
    san_id: str,
    slow_exports: Callable[[float], None],
) -> None:
    provisioned_claim(kube, namespace, san_id)
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Delete")
    ready_snapshot(kube, namespace, "snap", "data", snapshot_class)
    slow_exports(8)
    emulator.admin.reset_counters()

    exports.create(namespace, "resumed", volume_snapshot="snap")
    running = exports.wait_phase(namespace, "resumed", "Exporting")
    wait_for(
        "the managed-disk snapshot PUT", lambda: emulator.admin.count(**PUT_DISK_SNAPSHOT) == 1, timeout=30
    )
    exporter.kill()
    assert exports.phase(namespace, "resumed") == "Exporting"
    start_operator()

    done = exports.wait_phase(namespace, "resumed", "Succeeded", timeout=90)
    disk_id = done["status"]["diskSnapshotId"]
    assert disk_id == running["status"]["diskSnapshotId"]
    assert emulator.admin.count(**PUT_DISK_SNAPSHOT) == 1
    named = [d for d in disk_snapshots(emulator) if d["name"] == f"esexport-{namespace}_resumed"]
    assert len(named) == 1
    wait_for(
        "the source VolumeSnapshot to be released",
        lambda: FIN_EXPORT_SOURCE not in finalizers(kube.snapshot(namespace, "snap")),
        timeout=10,
    )
