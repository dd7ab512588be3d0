"""Install the chart and the plain manifests into the real API server, then run the operator with
nothing but the chart's ServiceAccount token: its RBAC is exactly what the product needs.

There is no kubelet, so the Deployment's pods never start; the operator runs as a local
process whose kubeconfig holds a TokenRequest token of the installed ServiceAccount.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from install_support import CHART, HERE, REPO_ROOT, Tools
from kubernetes import client as k8s

from elasticsan_snapshotter.demo import (
    DemoSan,
    Walkthrough,
    export_crd_files,
    export_reconciler_present,
    operator_env,
    volume_target,
    wait_for,
)
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import LocalCluster
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

RELEASE = "ess-chart"
CHART_NAMESPACE = "ess-chart-system"
MANIFEST_NAMESPACE = "elasticsan-snapshotter"

# (resource as kubectl prints it, resource names) -> verbs, for a cluster-wide install.
NEEDED: dict[tuple[str, str], set[str]] = {
    ("volumesnapshotcontents.snapshot.storage.k8s.io", ""): {
        "get",
        "list",
        "watch",
        "patch",
        "create",
        "delete",
    },
    ("volumesnapshotcontents.snapshot.storage.k8s.io/status", ""): {"patch"},
    ("volumesnapshotclasses.snapshot.storage.k8s.io", ""): {"list", "watch"},
    ("volumesnapshots.snapshot.storage.k8s.io", ""): {"get", "list", "watch", "patch", "create", "delete"},
    ("volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io", ""): {"get", "list", "watch", "patch"},
    ("volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io/status", ""): {"patch"},
    ("volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io", ""): {"get", "list", "watch"},
    ("volumegroupsnapshots.groupsnapshot.storage.k8s.io", ""): {
        "get",
        "list",
        "watch",
        "patch",
        "create",
        "delete",
    },
    ("storageclasses.storage.k8s.io", ""): {"get", "list", "watch"},
    ("persistentvolumes", ""): {"get", "list", "watch", "create", "patch", "delete"},
    ("persistentvolumeclaims", ""): {"get", "list", "watch", "patch"},
    ("events", ""): {"create"},
    ("elasticsansnapshotexports.elasticsan.snapshotter.dev", ""): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("elasticsansnapshotexports.elasticsan.snapshotter.dev/status", ""): {"patch"},
    ("elasticsansnapshotschedules.elasticsan.snapshotter.dev", ""): {"get", "list", "watch", "patch"},
    ("elasticsansnapshotschedules.elasticsan.snapshotter.dev/status", ""): {"patch"},
    ("clusterkopfpeerings.kopf.dev", ""): {"list", "watch"},
    ("customresourcedefinitions.apiextensions.k8s.io", ""): {"list", "watch"},
}
# What every authenticated user may do (system:basic-user, system:discovery and friends).
BUILT_IN = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}
ROW = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


@dataclass(frozen=True)
class Installed:
    namespace: str
    service_account: str
    peering: str


def can_i_list(
    tools: Tools, cluster: LocalCluster, installed: Installed, namespace: str
) -> dict[tuple[str, str], set[str]]:
    """``kubectl auth can-i --list`` for the ServiceAccount, as {(resource, names): verbs}."""
    subject = f"system:serviceaccount:{installed.namespace}:{installed.service_account}"
    out = tools.run(
        "kubectl",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "auth",
        "can-i",
        "--list",
        "--as",
        subject,
        "-n",
        namespace,
    ).stdout
    rules: dict[tuple[str, str], set[str]] = {}
    for line in out.splitlines()[1:]:
        match = ROW.match(line)
        assert match, f"unexpected can-i line: {line!r}"
        resource, urls, names, verbs = match.groups()
        if not resource:
            assert urls, line  # a non-resource URL such as /healthz or /api/*: public to everyone
            continue
        rules.setdefault((resource, names), set()).update(verbs.split())
    return rules


def service_account_kubeconfig(
    cluster: LocalCluster, api: k8s.ApiClient, installed: Installed, path: Path
) -> Path:
    core: Any = k8s.CoreV1Api(api)
    request = core.create_namespaced_service_account_token(
        installed.service_account,
        installed.namespace,
        k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
    )
    token: str = request.status.token
    assert token
    return cluster.write_kubeconfig(
        path, f"{installed.namespace}:{installed.service_account}", {"token": token}
    )


def run_scenario(
    cluster: LocalCluster,
    api: k8s.ApiClient,
    emulator: EmulatorProcess,
    demo_san: DemoSan,
    installed: Installed,
    workdir: Path,
) -> None:
    """The demo's walkthrough, with the operator holding only the ServiceAccount's token, and peering on."""
    kubeconfig = service_account_kubeconfig(cluster, api, installed, workdir / "sa.kubeconfig")
    info = emulator.info
    env = operator_env(
        info,
        kubeconfig,
        demo_san.arm_id(info.subscription_id),
        ESS_STANDALONE="false",
        ESS_PEERING_NAME=installed.peering,
        # As the Deployment sets them: the Lease is named after the release, in its namespace.
        ESS_LEASE_NAME=installed.peering,
        ESS_LEASE_NAMESPACE=installed.namespace,
    )
    operator = OperatorProcess(env, workdir / "operator.log")
    iqn, portal, _ = volume_target(info, demo_san)
    walk = Walkthrough(api, namespace=f"sa-{uuid.uuid4().hex[:8]}", iqn=iqn, portal=portal, timeout=90.0)
    walk.create_namespace()
    walk.install_classes()
    operator.start()
    try:
        # The replica holds the release's Lease: the leader-election rules work.
        coordination: Any = k8s.CoordinationV1Api(api)

        def leading() -> bool:
            try:
                lease = coordination.read_namespaced_lease(installed.peering, installed.namespace)
            except k8s.ApiException:
                return False
            return bool(lease.spec.holder_identity)

        wait_for(f"the operator to hold Lease {installed.peering}", leading, timeout=60.0)
        walk.static_volume()
        vs = walk.snapshot()
        content = walk.content_of(vs)
        assert content["status"]["readyToUse"] is True
        assert content["status"]["restoreSize"] == demo_san.volume_gib * 2**30
        restored = walk.restore()
        core: Any = k8s.CoreV1Api(api)
        pv = core.read_persistent_volume(restored.spec.volume_name)
        assert pv.spec.csi.driver == "iscsi.csi.k8s.io"
        assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "elasticsan.snapshotter.dev"
        if export_crd_files() and export_reconciler_present():
            export = walk.export()
            assert export["status"]["diskSnapshotId"]
        assert operator.running()
        log = operator.log_text()
        assert "Forbidden" not in log, log[-3000:]
    finally:
        operator.stop()


def apply_server_side_dry_run(tools: Tools, cluster: LocalCluster, manifest: Path) -> str:
    return tools.run(
        "kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "--dry-run=server", "-f", str(manifest)
    ).stdout


# -- Helm -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_release(tools: Tools, cluster: LocalCluster) -> Iterator[Installed]:
    kubeconfig = str(cluster.kubeconfig)
    tools.run(
        "helm",
        "install",
        RELEASE,
        str(CHART),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        CHART_NAMESPACE,
        "--create-namespace",
        # Other tests in the same run install the project's CRDs from crds/, unowned; a first install in a
        # cluster without them (as a user's) needs no flag.
        "--take-ownership",
        "--set",
        "snapshotClass.create=true",
        "--set",
        "storageClass.create=true",
        "--set",
        "workloadIdentity.clientId=00000000-0000-0000-0000-000000000abc",
    )
    try:
        yield Installed(
            CHART_NAMESPACE, f"{RELEASE}-elasticsan-snapshotter", f"{RELEASE}-elasticsan-snapshotter"
        )
    finally:
        tools.run("helm", "uninstall", RELEASE, "--kubeconfig", kubeconfig, "--namespace", CHART_NAMESPACE)


def test_helm_install_creates_every_rendered_object(
    tools: Tools, cluster: LocalCluster, helm_release: Installed
) -> None:
    manifest = tools.run(
        "helm", "get", "manifest", RELEASE, "--kubeconfig", str(cluster.kubeconfig), "-n", CHART_NAMESPACE
    ).stdout
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert {d["kind"] for d in docs} >= {"Deployment", "ServiceAccount", "ClusterRole", "ClusterKopfPeering"}
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        args = ["get", f"{doc['kind'].lower()}.{doc['apiVersion'].split('/')[0]}", doc["metadata"]["name"]]
        if doc["apiVersion"] == "v1":
            args[1] = doc["kind"].lower()
        if namespace:
            args += ["-n", namespace]
        tools.run("kubectl", "--kubeconfig", str(cluster.kubeconfig), *args)
    crds = tools.run("kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "crd", "-o", "name").stdout
    assert "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev" in crds
    for source in export_crd_files():
        name = yaml.safe_load(source.read_text())["metadata"]["name"]
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in crds


def test_full_values_pass_server_side_validation(tools: Tools, cluster: LocalCluster, tmp_path: Path) -> None:
    rendered = tools.run(
        "helm",
        "template",
        "ess-full",
        str(CHART),
        "-n",
        "ess-full",
        "--values",
        str(HERE / "values-full.yaml"),
    ).stdout
    # Namespaces first (the Roles and peerings live in them); no Prometheus operator or cert-manager
    # here, so no ServiceMonitor or Certificate CRD.
    docs = [
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] not in ("ServiceMonitor", "Certificate")
    ]
    namespaces = sorted(
        {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")} - {"default"}
    )
    for namespace in namespaces:
        tools.run("kubectl", "--kubeconfig", str(cluster.kubeconfig), "create", "namespace", namespace)
    manifest = tmp_path / "full.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    out = apply_server_side_dry_run(tools, cluster, manifest)
    assert out.count("(server dry run)") == len(docs)


def test_chart_service_account_may_do_exactly_what_the_operator_needs(
    tools: Tools, cluster: LocalCluster, helm_release: Installed, namespace: str
) -> None:
    rules = can_i_list(tools, cluster, helm_release, namespace)
    ours = {key: verbs for key, verbs in rules.items() if key[0] not in BUILT_IN}
    peering_patch = ("clusterkopfpeerings.kopf.dev", helm_release.peering)
    assert ours.pop(peering_patch) == {"patch"}
    assert ours == NEEDED


def test_operator_runs_the_scenario_with_the_chart_service_account(
    cluster: LocalCluster,
    api_client: k8s.ApiClient,
    emulator: EmulatorProcess,
    demo_san: DemoSan,
    helm_release: Installed,
    tmp_path: Path,
) -> None:
    run_scenario(cluster, api_client, emulator, demo_san, helm_release, tmp_path)


# -- plain manifests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(tools: Tools, cluster: LocalCluster, helm_release: Installed) -> Installed:
    # After the Helm tests (the CRDs are shared); kubectl apply takes over the existing CRDs.
    out = tools.run(
        "kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-k", str(REPO_ROOT / "deploy")
    ).stdout
    assert "deployment.apps/elasticsan-snapshotter created" in out
    return Installed(MANIFEST_NAMESPACE, "elasticsan-snapshotter", "elasticsan-snapshotter")


def test_plain_manifests_grant_the_same_rights(
    tools: Tools, cluster: LocalCluster, manifests: Installed, namespace: str
) -> None:
    rules = can_i_list(tools, cluster, manifests, namespace)
    ours = {key: verbs for key, verbs in rules.items() if key[0] not in BUILT_IN}
    assert ours.pop(("clusterkopfpeerings.kopf.dev", manifests.peering)) == {"patch"}
    assert ours == NEEDED


def test_operator_runs_the_scenario_with_the_manifests_service_account(
    cluster: LocalCluster,
    api_client: k8s.ApiClient,
    emulator: EmulatorProcess,
    demo_san: DemoSan,
    manifests: Installed,
    tmp_path: Path,
) -> None:
    run_scenario(cluster, api_client, emulator, demo_san, manifests, tmp_path)


def test_install_notes_name_the_lease_that_elects_the_active_replica(
    tools: Tools, cluster: LocalCluster
) -> None:
    # The chart never turns leader election off, so standbys wait on the Lease, not on Kopf peering.
    # A dry run still needs the peering kind known; Helm would install it from crds/ anyway.
    kopf_crds = CHART / "crds" / "kopf-peerings.yaml"
    tools.run("kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", str(kopf_crds))
    out = tools.run(
        "helm",
        "install",
        "ess-notes",
        str(CHART),
        "--dry-run=client",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "-n",
        "ess-notes",
        "--set",
        "replicaCount=2",
        # Another release of this run may own the CRDs; the notes do not depend on them.
        "--set",
        "crds.install=false",
    ).stdout
    notes = out[out.index("NOTES:") :]
    [line] = [line for line in notes.splitlines() if line.startswith("2 replicas")]
    assert "Lease ess-notes-elasticsan-snapshotter" in line, line
    assert "peering" not in line, line


def test_install_docs_rbac_table_is_what_the_chart_grants() -> None:
    # NEEDED is checked against the real API server above; the docs' table must say the same.
    text = (REPO_ROOT / "docs" / "install.md").read_text()
    rows = {}
    for line in text[text.index("| Resource | Verbs | Why |") :].splitlines()[2:]:
        if not line.startswith("|"):
            break
        resource, verbs, _why = (cell.strip() for cell in line.strip("|").split("|"))
        rows[resource.split()[0].strip("`")] = {v.strip() for v in verbs.split(";")[0].split(",")}
    for (resource, _names), verbs in NEEDED.items():
        name, _, sub = resource.partition("/")
        key = name.split(".")[0] + (f"/{sub}" if sub else "")
        assert rows.get(key) == verbs, f"{key}: docs {rows.get(key)}, chart {verbs}"
