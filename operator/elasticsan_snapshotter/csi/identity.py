"""The CSI Identity service: who we are, that we serve a controller, and whether Azure lets us in."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.wrappers_pb2 import BoolValue

from elasticsan_snapshotter import __version__
from elasticsan_snapshotter.csi._stubs import pb, pb_grpc
from elasticsan_snapshotter.csi.rpc import rpc
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.domain.ports import AzurePort, check_access

log = logging.getLogger(__name__)


class IdentityServicer(pb_grpc.IdentityServicer):
    def __init__(self, driver_name: str, azure: AzurePort, managed_sans: list[ElasticSanId]) -> None:
        self._driver_name = driver_name
        self._azure = azure
        self._managed_sans = managed_sans

    @rpc
    async def GetPluginInfo(self, request: pb.GetPluginInfoRequest, context: Any) -> pb.GetPluginInfoResponse:
        return pb.GetPluginInfoResponse(name=self._driver_name, vendor_version=__version__)

    @rpc
    async def GetPluginCapabilities(
        self, request: pb.GetPluginCapabilitiesRequest, context: Any
    ) -> pb.GetPluginCapabilitiesResponse:
        service = pb.PluginCapability.Service(type=pb.PluginCapability.Service.CONTROLLER_SERVICE)
        return pb.GetPluginCapabilitiesResponse(capabilities=[pb.PluginCapability(service=service)])

    @rpc
    async def Probe(self, request: pb.ProbeRequest, context: Any) -> pb.ProbeResponse:
        return pb.ProbeResponse(ready=BoolValue(value=await self._azure_reachable()))

    async def _azure_reachable(self) -> bool:
        """One cheap authenticated read: it fails when the credentials or the role assignment do not work."""
        try:
            await check_access(self._azure, self._managed_sans)
        except SnapshotterError as error:
            log.warning("not ready: %s: %s", error.reason, error, extra={"reason": error.reason})
            return False
        return True


__all__ = ["IdentityServicer"]
