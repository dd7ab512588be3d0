"""The node stand-in: emulated volumes mounted as ext4 where kubelet mounts them, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import Volume
from emulator_sdk import make_layout

from elasticsan_snapshotter.emulator.process import EmulatorError, EmulatorProcess
from elasticsan_snapshotter.local_cluster.node import NodeStandIn, unavailable
from node_support import checked_node, require

pytestmark = pytest.mark.integration


def _attributes(volume: Volume) -> dict[str, str]:
    target = volume.storage_target
    assert target is not None
    return {
        "iqn": target.target_iqn,
        "targetPortal": f"{target.target_portal_hostname}:{target.target_portal_port}",
    }


def test_a_volume_is_formatted_once_and_mounted_where_kubelet_would(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, rg: str, tmp_path: Path
) -> None:
    layout = make_layout(esan, rg)
    kubelet = tmp_path / "kubelet"
    with checked_node(emulator.admin, kubelet) as node:
        first = node.publish("pv-data", _attributes(layout.volume), pod_uid="uid-1")
        assert first.path == kubelet / "pods/uid-1/volumes/kubernetes.io~csi/pv-data/mount"
        assert first.formatted
        assert first.size_bytes() == 10 * 2**30
        (first.path / "note").write_text("kept")
        node.unpublish(first)
        assert node.leftovers() == []
        again = node.publish("pv-data", _attributes(layout.volume), pod_uid="uid-2")
        assert not again.formatted
        assert (again.path / "note").read_text() == "kept"


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt], ids=["failure", "interrupt"])
def test_everything_is_undone_when_the_test_fails(
    emulator: EmulatorProcess, esan: ElasticSanMgmtClient, rg: str, tmp_path: Path, stop: type[BaseException]
) -> None:
    require(unavailable())
    layout = make_layout(esan, rg)
    node = NodeStandIn(emulator.admin, tmp_path / "kubelet")
    seen: list[str] = []

    def failing_test() -> None:
        with node:
            node.publish("pv-a", _attributes(layout.volume))
            seen.extend(node.leftovers())  # it sees what is attached and mounted
            raise stop("the test failed")

    with pytest.raises(stop, match="the test failed"):
        failing_test()
    assert len(seen) == 2, seen  # the loop device and the mount
    assert node.leftovers() == []
    assert not (tmp_path / "kubelet").exists()


def test_an_unknown_target_attaches_nothing(emulator: EmulatorProcess, tmp_path: Path) -> None:
    with (
        checked_node(emulator.admin, tmp_path / "kubelet") as node,
        pytest.raises(EmulatorError, match="404"),
    ):
        node.publish("pv-x", {"iqn": "iqn.2026-01.net.windows.core.blob.ElasticSan.es-nothing:vol"})
