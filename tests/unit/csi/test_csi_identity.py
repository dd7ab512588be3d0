from __future__ import annotations

from csi_plugin import DRIVER, Plugin

from elasticsan_snapshotter import __version__
from elasticsan_snapshotter.csi._stubs import pb
from elasticsan_snapshotter.domain.errors import Forbidden


async def test_plugin_info_names_our_driver_and_version(plugin: Plugin) -> None:
    info = await plugin.identity.GetPluginInfo(pb.GetPluginInfoRequest())
    assert info.name == DRIVER
    assert info.vendor_version == __version__


async def test_plugin_offers_the_controller_service(plugin: Plugin) -> None:
    answer = await plugin.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest())
    services = [c.service.type for c in answer.capabilities]
    assert services == [pb.PluginCapability.Service.CONTROLLER_SERVICE]


async def test_probe_is_ready_only_while_azure_answers(plugin: Plugin) -> None:
    assert (await plugin.identity.Probe(pb.ProbeRequest())).ready.value
    assert plugin.azure.call_count("get_elastic_san") == 1
    plugin.azure.fail_next("get_elastic_san", Forbidden("no role assignment"))
    assert not (await plugin.identity.Probe(pb.ProbeRequest())).ready.value
    assert (await plugin.identity.Probe(pb.ProbeRequest())).ready.value
