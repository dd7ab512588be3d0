"""Start-up failures of the local control plane are one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from elasticsan_snapshotter.local_cluster import Artifacts, ClusterError, LocalCluster, assert_is_local


def fake_artifacts(tmp_path: Path) -> Artifacts:
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "snapshot-controller")
    return Artifacts({n: tmp_path / n for n in names}, {}, tmp_path, tmp_path / "csi.proto")


def test_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "snapshot-controller"):
            (tmp_path / name).write_text("")
        cluster = LocalCluster(fake_artifacts(tmp_path), tmp_path / "work", apiserver_port=port)
        with pytest.raises(ClusterError, match=rf"port 127\.0\.0\.1:{port} is already in use"):
            cluster.start()


def test_missing_binary_is_named(tmp_path: Path) -> None:
    cluster = LocalCluster(fake_artifacts(tmp_path), tmp_path / "work")
    with pytest.raises(ClusterError, match="etcd binary missing"):
        cluster.start()


def test_guard_refuses_foreign_context(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\n"
        "contexts: [{name: prod, context: {cluster: prod, user: admin}}]\n"
        "clusters: [{name: prod, cluster: {server: 'https://prod.example:6443'}}]\n"
    )
    with pytest.raises(ClusterError, match="refusing kubeconfig context 'prod'"):
        assert_is_local(kubeconfig, "https://127.0.0.1:1234")
