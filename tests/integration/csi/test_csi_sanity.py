"""csi-sanity (kubernetes-csi/csi-test v5.4.0) against ``elasticsan-snapshotter csi-controller`` on the emulator."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from csi_harness import (
    VOLUME_GROUP,
    Plugin,
    csi_controller,
    emulator,
    null_node,
    short_dir,
    unique_driver_name,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts

# Specs we skip, each with why it cannot apply. csi-sanity's own capability checks skip the
# rest it does not apply (publish, expand, modify, list volumes, capacity, clone, group snapshots).
SKIPPED: dict[str, str] = {
    "Node Service": "node RPCs belong to the node plugin (csi-driver-iscsi); this plugin is controller-only",
}

SUMMARY = re.compile(
    r"(?P<verdict>SUCCESS|FAIL)! -- (?P<passed>\d+) Passed \| (?P<failed>\d+) Failed \| "
    r"(?P<pending>\d+) Pending \| (?P<skipped>\d+) Skipped"
)

# Areas whose every spec must run and pass: the RPCs we advertise.
OURS = re.compile(
    r"Identity Service|ControllerGetCapabilities|CreateVolume|DeleteVolume|ValidateVolumeCapabilities"
    r"|CreateSnapshot|DeleteSnapshot|ListSnapshots"
)
# Specs in those areas that csi-sanity itself skips because they need a capability we do not offer.
SUITE_SKIPS = re.compile(
    r"from an existing source volume|source volume is not found"  # CLONE_VOLUME
    r"|volume attribute class"  # MODIFY_VOLUME
    r"|GroupController"  # GROUP_CONTROLLER_SERVICE (volume group snapshots)
)


@pytest.fixture(scope="module")
def sanity_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorProcess, Plugin]]:
    workdir = short_dir("sanity-")
    try:
        with (
            emulator(tmp_path_factory.mktemp("emulator")) as process,
            csi_controller(process.info, workdir, unique_driver_name()) as plugin,
        ):
            yield process, plugin
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def skip_regex() -> str:
    return "|".join(re.escape(name) for name in SKIPPED)


def test_csi_sanity_passes(
    artifacts: Artifacts, sanity_plugin: tuple[EmulatorProcess, Plugin], tmp_path: Path
) -> None:
    _, plugin = sanity_plugin
    params = tmp_path / "volume-parameters.yaml"
    params.write_text(f"volumeGroup: {VOLUME_GROUP}\n")
    report = tmp_path / "sanity.xml"
    with null_node(plugin.socket.parent, plugin.driver_name) as node_endpoint:
        run = subprocess.run(
            [
                str(artifacts.binary("csi-sanity")),
                f"--csi.endpoint={node_endpoint}",
                f"--csi.controllerendpoint={plugin.endpoint}",
                f"--csi.testvolumeparameters={params}",
                f"--csi.testvolumesize={1024**3}",
                f"--csi.mountdir={tmp_path / 'mount'}",
                f"--csi.stagingdir={tmp_path / 'staging'}",
                f"--ginkgo.skip={skip_regex()}",
                f"--ginkgo.junit-report={report}",
                "--ginkgo.no-color",
                "--ginkgo.v",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    output = run.stdout + run.stderr
    found = SUMMARY.search(output)
    assert found, f"no csi-sanity summary in its output:\n{output[-5000:]}"
    # Printed so the CI log shows the judge's verdict (run pytest with -s or see captured output).
    print(f"csi-sanity: {found.group(0)}")
    by_us = skipped_by_list(report) if report.exists() else {}
    for name, reason in SKIPPED.items():
        print(f"  skipped by name {name!r} ({by_us.get(name, 0)} specs): {reason}")
    assert int(found["failed"]) == 0, f"{found.group(0)}\n{output[-8000:]}\n{plugin.log_tail()}"
    assert run.returncode == 0, output[-5000:]
    assert int(found["passed"]) > 0
    assert_every_spec_of_ours_ran(report)
    served = plugin.metrics()
    for method in ("CreateVolume", "CreateSnapshot", "ListSnapshots", "DeleteSnapshot", "DeleteVolume"):
        assert f'elasticsan_snapshotter_csi_rpcs_total{{code="OK",method="{method}"}}' in served, method


def skipped_by_list(report: Path) -> dict[str, int]:
    counts = dict.fromkeys(SKIPPED, 0)
    for case in ET.parse(report).getroot().iter("testcase"):
        for name in SKIPPED:
            if name in case.get("name", "") and case.get("status") == "skipped":
                counts[name] += 1
    return counts


def assert_every_spec_of_ours_ran(report: Path) -> None:
    """No spec for an RPC we advertise may be skipped, except for a capability we do not offer."""
    ran, not_run = [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        if not OURS.search(name) or any(skip in name for skip in SKIPPED):
            continue
        if case.get("status") == "passed":
            ran.append(name)
        elif not SUITE_SKIPS.search(name):
            not_run.append(f"{case.get('status')}: {name}")
    assert not not_run, "specs for advertised RPCs that did not pass:\n" + "\n".join(not_run)
    assert len(ran) >= 30, f"only {len(ran)} specs of ours ran"
