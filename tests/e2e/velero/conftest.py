"""Fixtures for the Velero tests: the pinned Velero binaries, its S3 stand-in and server, and the operator.

The emulator, the operator process and the Kubernetes helpers are the operator tests' own
(``tests/integration/operator``), loaded from there rather than repeated.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kubernetes import client as k8s

from elasticsan_snapshotter.local_cluster import Artifacts, ArtifactsError, LocalCluster, discover

OPERATOR_TESTS = Path(__file__).resolve().parents[2] / "integration" / "operator"
sys.path.insert(0, str(OPERATOR_TESTS))

from velero_stack import ObjectStore, Velero, VeleroObjects  # noqa: E402

from waiting import wait_for  # noqa: E402


def _operator_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("operator_fixtures", OPERATOR_TESTS / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _operator_fixtures()
emulator = _shared.emulator
esan = _shared.esan
san_id = _shared.san_id
start_operator = _shared.start_operator
source_volume = _shared.source_volume
operator = _shared.operator
kube = _shared.kube
node = _shared.node

VELERO_BINARIES = ("velero", "velero-plugin-for-aws")


@pytest.fixture(scope="session")
def velero_artifacts(pytestconfig: pytest.Config) -> Artifacts:
    started = time.monotonic()
    try:
        found = discover(only=VELERO_BINARIES)
        for name in VELERO_BINARIES:
            found.binary(name)
    except ArtifactsError as exc:
        reason = f"the pinned Velero binaries cannot be built: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    elapsed = time.monotonic() - started
    if elapsed > 10:  # a cold cache: say what the first build cost
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"built Velero and velero-plugin-for-aws in {elapsed:.0f}s (cached from now on)"
            )
    return found


@pytest.fixture(scope="module")
def velero(
    velero_artifacts: Artifacts,
    artifacts: Artifacts,
    cluster: LocalCluster,
    api_client: k8s.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VeleroObjects]:
    workdir = tmp_path_factory.mktemp("velero")
    store = ObjectStore(workdir)
    versions = velero_artifacts.versions
    stack = Velero(
        velero_artifacts.binary("velero"),
        velero_artifacts.binary("velero-plugin-for-aws"),
        artifacts.binary("kubectl"),
        cluster.kubeconfig,
        store,
        workdir,
    )
    try:
        store.start()
        stack.install(
            plugin_image=f"velero/velero-plugin-for-aws:{versions['VELERO_PLUGIN_FOR_AWS_VERSION']}",
            image=f"velero/velero:{versions['VELERO_VERSION']}",
        )
        stack.start_server()
        objects = VeleroObjects(api_client, stack)

        def available() -> bool:
            assert stack.server is not None
            stack.server.check_alive()
            location = objects.get("backupstoragelocations", "default")
            return bool(location and (location.get("status") or {}).get("phase") == "Available")

        wait_for("the backup storage location to be Available", available, timeout=120, interval=1.0)
        yield objects
    finally:
        stack.stop_server()
        store.stop()
