"""`helm upgrade` from the previous chart version: custom resources survive and the new CRD schemas serve.

The previous chart is taken from git history at test time: the chart as it was just before its
``version`` in Chart.yaml last changed. It runs in a control plane of its own, because CRDs are
cluster-wide and this test installs, changes and keeps them.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from install_support import CHART, REPO_ROOT, Tools
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

import hack_scripts
from capabilities import missing
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster, assert_is_local
from waiting import wait_for

RELEASE = "ess-upgrade"
NAMESPACE = "ess-upgrade-system"
WORKLOAD = "default"
CHART_PATH = "charts/elasticsan-snapshotter"
EXPORT_CRD = "elasticsansnapshotexports.elasticsan.snapshotter.dev"
GROUP, VERSION, PLURAL = "elasticsan.snapshotter.dev", "v1alpha1", "elasticsansnapshotexports"
PROBE = "upgradeProbe"  # a spec field only the changed schema knows


def git(*args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def chart_version(text: str) -> str:
    version: str = yaml.safe_load(text)["version"]
    return version


def previous_chart_commit() -> str:
    """The last commit whose chart carries a version other than the current one."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        missing("the upgrade test reads the previous chart from git history; this is not a git checkout")
    current = chart_version((CHART / "Chart.yaml").read_text())
    introduced = "HEAD"  # the current version may not be committed yet
    for commit in git("log", "--first-parent", "--format=%H", "--", f"{CHART_PATH}/Chart.yaml").split():
        if chart_version(git("show", f"{commit}:{CHART_PATH}/Chart.yaml")) != current:
            return introduced if introduced == "HEAD" else f"{introduced}^"
        introduced = commit
    pytest.fail(
        f"no earlier chart version than {current} in git history (a shallow clone? fetch with full history)",
        pytrace=False,
    )


def extract_chart(commit: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit, CHART_PATH],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / CHART_PATH


def chart_with_probe_field(into: Path) -> Path:
    """The current chart with one more optional spec field in the export CRD, made as a real change is:
    edit the CRD in crds/, regenerate the chart's template."""
    chart = into / "chart"
    shutil.copytree(CHART, chart)
    source = yaml.safe_load((REPO_ROOT / "crds" / "elasticsansnapshotexports.yaml").read_text())
    for version in source["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"][PROBE] = {"type": "string", "description": "Only in the changed schema."}
    changed = into / "elasticsansnapshotexports.yaml"
    changed.write_text(yaml.safe_dump(source, sort_keys=False))
    (chart / "templates" / "crds" / changed.name).write_text(
        hack_scripts.load("render_manifests").crd_template(changed)
    )
    return chart


class Upgrade:
    """helm, kubectl and the API against the test's own control plane."""

    def __init__(self, tools: Tools, cluster: LocalCluster, api: k8s.ApiClient) -> None:
        self.tools = tools
        self.kubeconfig = str(cluster.kubeconfig)
        self.custom: Any = k8s.CustomObjectsApi(api)

    def helm(self, verb: str, *args: str) -> str:
        return self.tools.run(
            "helm", verb, RELEASE, *args, "--kubeconfig", self.kubeconfig, "-n", NAMESPACE
        ).stdout

    def install_or_upgrade(self, verb: str, chart: Path, *flags: str) -> None:
        self.helm(
            verb,
            str(chart),
            *flags,
            "--set",
            "workloadIdentity.clientId=00000000-0000-0000-0000-0000000000ab",
        )

    def crd(self) -> dict[str, Any]:
        """The export CRD as the API server stores it (raw JSON, no client model in between)."""
        out = self.tools.run(
            "kubectl", "--kubeconfig", self.kubeconfig, "get", "crd", EXPORT_CRD, "-o", "json"
        )
        crd: dict[str, Any] = json.loads(out.stdout)
        return crd

    def established(self) -> bool:
        conditions = self.crd().get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def exports(self) -> dict[str, dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, WORKLOAD, PLURAL)
        return {item["metadata"]["name"]: item for item in listed["items"]}

    def create_export(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ElasticSanSnapshotExport",
            "metadata": {"name": name},
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, WORKLOAD, PLURAL, {**body, "spec": spec}
        )
        return created

    def set_probe(self, name: str, value: Any) -> dict[str, Any]:
        patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, WORKLOAD, PLURAL, name, {"spec": {PROBE: value}}
        )
        return patched


@pytest.fixture(scope="module")
def upgrade(
    tools: Tools, artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upgrade]:
    local = LocalCluster(artifacts, tmp_path_factory.mktemp("upgrade-cluster"), snapshot_controller=False)
    local.start()
    try:
        assert_is_local(local.kubeconfig, local.server)
        api = k8s_config.new_client_from_config(config_file=str(local.kubeconfig))
        try:
            yield Upgrade(tools, local, api)
        finally:
            api.close()
    finally:
        local.stop()


def test_upgrade_from_previous_chart_keeps_resources_and_serves_new_schema(
    upgrade: Upgrade, tmp_path: Path
) -> None:
    previous = extract_chart(previous_chart_commit(), tmp_path / "previous")
    assert chart_version((previous / "Chart.yaml").read_text()) != chart_version(
        (CHART / "Chart.yaml").read_text()
    )
    upgrade.install_or_upgrade("install", previous, "--create-namespace")
    wait_for("the previous chart's export CRD", upgrade.established)

    pending = upgrade.create_export("pending", {"source": {"volumeSnapshotName": "nightly"}})
    done = upgrade.create_export(
        "done", {"source": {"snapshotHandle": "rg#san#vg#snap-1"}, "deletionPolicy": "Retain"}
    )
    status = {
        "phase": "Succeeded",
        "diskSnapshotId": "/subscriptions/s/disk-snapshot",
        "progressPercent": 100,
    }
    done = upgrade.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, WORKLOAD, PLURAL, "done", {"status": status}
    )
    before = upgrade.exports()
    assert set(before) == {"pending", "done"}

    # Chart versions before the CRDs became templates installed them unowned: the first upgrade adopts them.
    upgrade.install_or_upgrade("upgrade", CHART, "--take-ownership")
    crd = upgrade.crd()
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    show = ("--show-only", "templates/crds/elasticsansnapshotexports.yaml")
    rendered = yaml.safe_load(upgrade.tools.run("helm", "template", RELEASE, str(CHART), *show).stdout)
    assert [v["schema"] for v in crd["spec"]["versions"]] == [
        v["schema"] for v in rendered["spec"]["versions"]
    ]
    after = upgrade.exports()
    for name in ("pending", "done"):
        assert after[name]["metadata"]["uid"] == before[name]["metadata"]["uid"]
        assert after[name]["spec"] == before[name]["spec"]
    assert after["done"]["status"] == done["status"] == status
    assert after["pending"]["metadata"]["uid"] == pending["metadata"]["uid"]

    # The current schema does not know the probe field: the API server prunes it.
    assert PROBE not in upgrade.set_probe("pending", "kept?")["spec"]

    # An upgrade to a chart whose CRD schema gained the field: it is served, and validated.
    upgrade.install_or_upgrade("upgrade", chart_with_probe_field(tmp_path / "changed"))
    wait_for(
        "the new export schema to keep the probe field",
        lambda: upgrade.set_probe("pending", "kept").get("spec", {}).get(PROBE) == "kept",
    )
    with pytest.raises(ApiException) as refused:
        upgrade.set_probe("done", 7)
    assert refused.value.status == 422
    assert f"spec.{PROBE}" in str(refused.value.body)
    survived = upgrade.exports()
    assert survived["done"]["status"] == done["status"]
    assert survived["done"]["metadata"]["uid"] == before["done"]["metadata"]["uid"]

    # Uninstalling keeps the CRDs and with them the resources.
    upgrade.helm("uninstall")
    assert upgrade.established()
    assert set(upgrade.exports()) == {"pending", "done"}
