"""The manifests in examples/ work as written: applied with kubectl, in the order a user would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from group_scenario import Groups
from operator_scenario import FAST, Kube, StartOperator

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from examples_seed import EXAMPLE_SEED, EXAMPLES, SAN_ID, SUBSCRIPTION


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An emulator holding exactly the resources the examples name."""
    state = tmp_path_factory.mktemp("examples-emulator")
    seed = state / "seed.json"
    seed.write_text(json.dumps(EXAMPLE_SEED))
    process = EmulatorProcess(
        state / "state", seed=seed, extra_args=[*FAST, "--subscription-id", SUBSCRIPTION]
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def san_id() -> str:
    return SAN_ID


def kubectl(artifacts: Artifacts, cluster: LocalCluster, namespace: str, *args: str) -> str:
    proc = subprocess.run(
        [str(artifacts.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_examples_as_written(
    start_operator: StartOperator,
    artifacts: Artifacts,
    cluster: LocalCluster,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
) -> None:
    start_operator()
    for name in ("storageclass.yaml", "volumesnapshotclass.yaml", "static-volume.yaml"):
        kubectl(artifacts, cluster, namespace, "apply", "-f", str(EXAMPLES / name))
    kube.wait_claim_bound(namespace, "my-data")

    kubectl(artifacts, cluster, namespace, "apply", "-f", str(EXAMPLES / "volumesnapshot.yaml"))
    vs = kube.wait_snapshot_ready(namespace, "my-data-snapshot")
    assert vs["status"]["restoreSize"] == "10Gi"

    kubectl(artifacts, cluster, namespace, "apply", "-f", str(EXAMPLES / "restore.yaml"))
    claim = kube.wait_claim_bound(namespace, "my-data-restored")
    restored = esan.volumes.get("my-rg", "my-elastic-san", "my-volume-group", f"pvc-{claim.metadata.uid}")
    assert restored.creation_data.create_source == "VolumeSnapshot"
    assert restored.creation_data.source_id.endswith(f"/snapshots/snapshot-{vs['metadata']['uid']}")
    shown = kubectl(artifacts, cluster, namespace, "get", "volumesnapshot", "my-data-snapshot")
    assert "true" in shown.splitlines()[1]

    for name in ("volumegroupsnapshotclass.yaml", "volumegroupsnapshot.yaml"):
        kubectl(artifacts, cluster, namespace, "apply", "-f", str(EXAMPLES / name))
    group = Groups(kube, namespace)
    group.wait_ready("my-app-group")
    [member] = group.wait_members_ready("my-app-group", 1)
    assert member["spec"]["source"]["persistentVolumeClaimName"] == "my-data"
    handle = group.content_of("my-app-group")["status"]["volumeGroupSnapshotHandle"]
    [cut] = [
        s
        for s in esan.volume_snapshots.list_by_volume_group("my-rg", "my-elastic-san", "my-volume-group")
        if s.name.startswith(f"{handle}-")
    ]
    assert cut.creation_data.source_id.endswith("/volumes/my-volume")

    # The same claim under the freezing class: no pod mounts it, so nothing needs a freeze.
    kubectl(
        artifacts,
        cluster,
        namespace,
        "apply",
        "-f",
        str(EXAMPLES / "volumegroupsnapshotclass-filesystem-consistent.yaml"),
    )
    group.create("my-app-frozen", "elasticsan-group-frozen", {"app": "my-app"})
    group.wait_ready("my-app-frozen")
    frozen = group.content_of("my-app-frozen")["metadata"]["annotations"]
    assert frozen["elasticsan.snapshotter.dev/consistency"] == "FilesystemConsistent"
