"""The Helm chart as helm itself renders it: lint, golden renders, schema, hardening, RBAC shape.

Goldens and plain manifests are regenerated with ``python hack/render_manifests.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from install_support import CHART, HERE, REPO_ROOT, Tools

from elasticsan_snapshotter.demo import export_crd_files

FULL_VALUES = HERE / "values-full.yaml"
RENDER_SCRIPT = REPO_ROOT / "hack" / "render_manifests.py"


def template(tools: Tools, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return tools.run("helm", "template", "ess", str(CHART), "--namespace", "ess-system", *args, check=check)


def objects(tools: Tools, *args: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(template(tools, *args).stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind]
    return found


def render_check(only: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER_SCRIPT), "--check", "--only", only],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_helm_lint_passes(tools: Tools, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    out = tools.run("helm", *args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("only", ["golden", "manifests", "crds"])
def test_generated_files_are_current(only: str) -> None:
    result = render_check(only)
    assert result.returncode == 0, result.stderr


def test_chart_crds_are_the_crds_dir_with_a_keep_policy(tools: Tools) -> None:
    sources = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    assert sources
    assert {p.name for p in (CHART / "templates" / "crds").glob("*.yaml")} == {s.name for s in sources}
    # Only Kopf's peering CRDs stay in the chart's crds/ folder, which helm upgrade never touches.
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == {"kopf-peerings.yaml"}
    keep = {"helm.sh/resource-policy": "keep"}
    for source in sources:
        wanted = [d for d in yaml.safe_load_all(source.read_text()) if d]
        show = ("--show-only", f"templates/crds/{source.name}")
        kept = [d for d in yaml.safe_load_all(template(tools, *show).stdout) if d]
        assert [d["metadata"].pop("annotations") for d in kept] == [keep] * len(wanted)
        assert kept == wanted, source.name
        plain = [
            d for d in yaml.safe_load_all(template(tools, "--set", "crds.keep=false", *show).stdout) if d
        ]
        assert plain == wanted, source.name
    assert not [
        d for d in objects(tools, "--set", "crds.install=false") if d["kind"] == "CustomResourceDefinition"
    ]
    # The demo installs byte copies, its package data.
    assert [p.read_bytes() for p in export_crd_files()] == [s.read_bytes() for s in sources]


def test_golden_renders_hold_every_object_kind() -> None:
    kinds = {d["kind"] for d in yaml.safe_load_all((HERE / "golden" / "full.yaml").read_text()) if d}
    assert kinds == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "DaemonSet",
        "Certificate",
        "KopfPeering",
        "VolumeSnapshotClass",
        "StorageClass",
    }


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--set", "replicaCont=2", "additional properties 'replicaCont' not allowed"),
        ("--set", "snapshotClass.creat=true", "additional properties 'creat' not allowed"),
        ("--set", "replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("--set", "replicaCount=0", "at '/replicaCount'"),
        ("--set-json", 'managedSans=["san1"]', "at '/managedSans/0'"),
        ("--set", "logFormat=xml", "at '/logFormat'"),
        (
            "--set-string",
            "workloadIdentity.enabled=yes",
            "at '/workloadIdentity/enabled': got string, want boolean",
        ),
    ],
)
def test_schema_refuses_unknown_keys_and_wrong_types(
    tools: Tools, flag: str, value: str, message: str
) -> None:
    result = template(tools, flag, value, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_deployment_is_hardened_and_probed(tools: Tools) -> None:
    docs = objects(tools)
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["args"] == ["operator"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ESS_STANDALONE"] == "false"
    assert env["ESS_PEERING_NAME"] == "ess-elasticsan-snapshotter"
    assert env["ESS_ARM_ENDPOINT"] == "https://management.azure.com/"
    assert env["ESS_HEALTH_PORT"] == "8081"
    assert "AZURE_AUTHORITY_HOST" not in env  # the workload identity webhook provides it
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "ess-elasticsan-snapshotter"


def test_several_replicas_get_a_disruption_budget_and_rolling_updates(tools: Tools) -> None:
    docs = objects(tools, "--set", "replicaCount=3")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_workload_identity_on_service_account_and_pod(tools: Tools) -> None:
    docs = objects(
        tools, "--set", "workloadIdentity.clientId=abc-123", "--set", "azure.cloud=AzureChinaCloud"
    )
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"azure.workload.identity/client-id": "abc-123"}
    pod = one(docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["ESS_ARM_ENDPOINT"] == "https://management.chinacloudapi.cn/"
    assert env["AZURE_AUTHORITY_HOST"] == "https://login.chinacloudapi.cn/"


def test_rbac_has_no_wildcards_and_namespaced_mode_uses_roles(tools: Tools) -> None:
    for docs in (objects(tools), objects(tools, "--values", str(FULL_VALUES))):
        for doc in docs:
            for rule in doc.get("rules") or []:
                assert "*" not in rule["verbs"]
                assert "*" not in rule["resources"]
                assert "*" not in rule["apiGroups"]
    docs = objects(tools, "--set-json", 'watchNamespaces=["team-a","team-b"]')
    cluster_resources = {r for rule in one(docs, "ClusterRole")["rules"] for r in rule["resources"]}
    assert cluster_resources == {
        "volumesnapshotcontents",
        "volumesnapshotcontents/status",
        "volumesnapshotclasses",
        "volumegroupsnapshotcontents",
        "volumegroupsnapshotcontents/status",
        "volumegroupsnapshotclasses",
        "storageclasses",
        "persistentvolumes",
        "customresourcedefinitions",
    }
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"}
    assert roles == {
        ("team-a", "ess-elasticsan-snapshotter"),
        ("team-b", "ess-elasticsan-snapshotter"),
        ("default", "ess-elasticsan-snapshotter-events"),
        ("ess-system", "ess-elasticsan-snapshotter-leader-election"),
    }
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert {p["metadata"]["namespace"] for p in peerings} == {"team-a", "team-b"}


def test_optional_classes_carry_driver_and_velero_label(tools: Tools) -> None:
    docs = objects(tools, "--set", "snapshotClass.create=true", "--set", "storageClass.create=true")
    snapshot_class = one(docs, "VolumeSnapshotClass")
    assert snapshot_class["driver"] == "elasticsan.snapshotter.dev"
    assert snapshot_class["metadata"]["labels"]["velero.io/csi-volumesnapshot-class"] == "true"
    storage_class = one(docs, "StorageClass")
    assert storage_class["provisioner"] == "elasticsan.snapshotter.dev"
    assert not [d for d in objects(tools) if d["kind"] in ("VolumeSnapshotClass", "StorageClass")]
