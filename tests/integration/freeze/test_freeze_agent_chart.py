"""The freeze agent in the Helm chart: the DaemonSet's privileges, no RBAC, and certificates that work.

Rendered with the pinned helm, installed into the real API server, and the chart's own
certificates handed to a real agent and client: the pair the chart makes must talk.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from elasticsan_snapshotter.freeze.tls import CLIENT_NAME, SERVER_NAME, TlsFiles
from elasticsan_snapshotter.local_cluster import Artifacts, LocalCluster
from freeze_support import AgentProcess, Node, Pki, short_dir

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "elasticsan-snapshotter"
RELEASE = "ess-freeze"
NAMESPACE = "ess-freeze-system"
ENABLED = ("--set", "freezeAgent.enabled=true")
BUILT_IN = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


def run(binary: Path, *args: str) -> str:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{binary.name} {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def render(artifacts: Artifacts, *args: str) -> list[dict[str, Any]]:
    out = run(artifacts.binary("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    return [d for d in yaml.safe_load_all(out) if d]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def secret_files(secret: dict[str, Any], directory: Path) -> TlsFiles:
    directory.mkdir(parents=True)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (directory / key).write_bytes(base64.b64decode(secret["data"][key]))
    return TlsFiles.in_directory(directory)


def certificate(files: TlsFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files.cert.read_bytes())


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_the_agent_is_off_unless_asked_for(artifacts: Artifacts) -> None:
    docs = render(artifacts)
    assert not [d for d in docs if d["kind"] == "DaemonSet"]
    assert not [d for d in docs if "snapshotter-freeze-" in d["metadata"]["name"]]


def test_the_daemonset_has_only_the_privileges_it_needs(artifacts: Artifacts) -> None:
    docs = render(artifacts, *ENABLED)
    agent_name = f"{RELEASE}-elasticsan-snapshotter-freeze-agent"
    daemonset = named(docs, "DaemonSet", agent_name)
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert named(docs, "ServiceAccount", agent_name)["automountServiceAccountToken"] is False
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["kubelet"] == {
        "name": "kubelet",
        "mountPath": "/var/lib/kubelet",
        "mountPropagation": "HostToContainer",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kubelet"]["hostPath"] == {"path": "/var/lib/kubelet", "type": "Directory"}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/elasticsan-snapshotter/freeze-agent"
    assert "--thaw-all" in container["lifecycle"]["preStop"]["exec"]["command"]
    assert "--listen=$(POD_IP):7443" in container["args"]
    # No RBAC names the agent's account.
    for doc in docs:
        for subject in doc.get("subjects") or []:
            assert subject["name"] != agent_name
    # The operator gets the client certificate.
    operator = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    secret_volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in operator["volumes"]}
    assert secret_volumes["freeze-client-tls"] == f"{RELEASE}-elasticsan-snapshotter-freeze-client-tls"
    # ... and finds the agents by the DaemonSet's own pod labels, with nothing but pod listing.
    [container] = operator["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    selector = dict(term.split("=") for term in env["ESS_FREEZE_AGENT_SELECTOR"].split(","))
    assert selector == daemonset["spec"]["template"]["metadata"]["labels"]
    assert env["ESS_FREEZE_CLIENT_TLS_DIR"] == "/etc/elasticsan-snapshotter/freeze-client-tls"
    pods_role = named(docs, "ClusterRole", f"{RELEASE}-elasticsan-snapshotter-freeze-pods")
    assert pods_role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    binding = named(docs, "ClusterRoleBinding", f"{RELEASE}-elasticsan-snapshotter-freeze-pods")
    assert [s["name"] for s in binding["subjects"]] == [operator["serviceAccountName"]]


@pytest.fixture
def stand_in() -> Iterator[Node]:
    made = Node("chart-node", short_dir("ess-chart-"))
    try:
        yield made
    finally:
        made.close()


async def test_the_charts_certificates_let_the_operator_and_only_it_talk_to_the_agent(
    artifacts: Artifacts, stand_in: Node, tmp_path: Path
) -> None:
    docs = render(artifacts, *ENABLED)
    prefix = f"{RELEASE}-elasticsan-snapshotter"
    agent_tls = secret_files(named(docs, "Secret", f"{prefix}-freeze-agent-tls"), tmp_path / "agent")
    client_tls = secret_files(named(docs, "Secret", f"{prefix}-freeze-client-tls"), tmp_path / "client")
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(named(docs, "Secret", f"{prefix}-freeze-ca")["data"]["tls.crt"])
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server, client = certificate(agent_tls), certificate(client_tls)
    assert signed_by(server, ca)
    assert signed_by(client, ca)
    assert SERVER_NAME in server.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == CLIENT_NAME

    pki = Pki(tmp_path, agent=agent_tls, operator=client_tls)
    agent = AgentProcess(stand_in, pki)
    identity = await agent.start()  # the handshake and the name check pass with the chart's pair
    assert identity.node_name == "chart-node"


@pytest.fixture
def installed(artifacts: Artifacts, cluster: LocalCluster) -> Iterator[str]:
    kubeconfig = str(cluster.kubeconfig)
    helm = artifacts.binary("helm")
    run(
        helm,
        "install",
        RELEASE,
        str(CHART),
        "--kubeconfig",
        kubeconfig,
        "-n",
        NAMESPACE,
        "--create-namespace",
        *ENABLED,
    )
    try:
        yield kubeconfig
    finally:
        run(helm, "uninstall", RELEASE, "--kubeconfig", kubeconfig, "-n", NAMESPACE)


def secret_data(artifacts: Artifacts, kubeconfig: str, name: str) -> dict[str, str]:
    out = run(
        artifacts.binary("kubectl"),
        "--kubeconfig",
        kubeconfig,
        "get",
        "secret",
        name,
        "-n",
        NAMESPACE,
        "-o",
        "yaml",
    )
    data: dict[str, str] = yaml.safe_load(out)["data"]
    return data


def test_helm_installs_the_agent_without_rbac_and_renews_certificates_on_upgrade(
    artifacts: Artifacts, installed: str
) -> None:
    kubectl, helm = artifacts.binary("kubectl"), artifacts.binary("helm")
    prefix = f"{RELEASE}-elasticsan-snapshotter"
    run(kubectl, "--kubeconfig", installed, "get", "daemonset", f"{prefix}-freeze-agent", "-n", NAMESPACE)
    subject = f"system:serviceaccount:{NAMESPACE}:{prefix}-freeze-agent"
    rights = run(
        kubectl, "--kubeconfig", installed, "auth", "can-i", "--list", "--as", subject, "-n", NAMESPACE
    )
    resources = {
        line.split()[0]
        for line in rights.splitlines()[1:]
        if line and not line.startswith(" ") and not line.startswith("[")
    }
    assert resources & BUILT_IN, rights  # the listing was read
    assert resources <= BUILT_IN, (
        f"the freeze agent's account may do more than any user: {resources - BUILT_IN}"
    )

    names = [f"{prefix}-freeze-ca", f"{prefix}-freeze-agent-tls", f"{prefix}-freeze-client-tls"]
    first = {n: secret_data(artifacts, installed, n) for n in names}
    upgrade = ("upgrade", RELEASE, str(CHART), "--kubeconfig", installed, "-n", NAMESPACE, *ENABLED)
    run(helm, *upgrade)
    assert {n: secret_data(artifacts, installed, n) for n in names} == first, (
        "valid certificates were replaced"
    )

    # Within renewBeforeDays of their end (here: always), the leaves are renewed from the same CA.
    run(helm, *upgrade, "--set", "freezeAgent.certificates.renewBeforeDays=400")
    second = {n: secret_data(artifacts, installed, n) for n in names}
    assert second[names[0]] == first[names[0]]
    ca = x509.load_pem_x509_certificate(base64.b64decode(second[names[0]]["tls.crt"]))
    for leaf in names[1:]:
        assert second[leaf]["tls.crt"] != first[leaf]["tls.crt"]
        assert signed_by(x509.load_pem_x509_certificate(base64.b64decode(second[leaf]["tls.crt"])), ca)
