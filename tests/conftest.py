"""Fixtures shared by every test layer.

The local control plane (real etcd, kube-apiserver, kube-controller-manager and
snapshot-controller) starts once per test session, only when a test asks for it;
each test gets a fresh namespace. A guard refuses any kubeconfig other than the
one this session started, so no test can touch a real cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from elasticsan_snapshotter.local_cluster import (
    Artifacts,
    ArtifactsError,
    ClusterError,
    LocalCluster,
    assert_is_local,
    discover,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder a test lives in is its layer; mark it so `-m unit` and friends work.
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    try:
        return discover()
    except ArtifactsError as exc:
        pytest.fail(f"cannot build the pinned control-plane binaries: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def cluster(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(artifacts, workdir, keep_workdir=True)
    try:
        local.start()
    except ClusterError as exc:
        pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(local.kubeconfig)
    try:
        assert_is_local(local.kubeconfig, local.server)
        yield local
    finally:
        local.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[k8s.ApiClient]:
    assert_is_local(cluster.kubeconfig, cluster.server)
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(cluster: LocalCluster, api_client: k8s.ApiClient) -> Iterator[str]:
    assert_is_local(Path(os.environ["KUBECONFIG"]), cluster.server)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
