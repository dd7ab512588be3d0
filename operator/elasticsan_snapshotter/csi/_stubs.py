"""The generated modules under short names: ``pb`` (messages) and ``pb_grpc`` (services)."""

from collections.abc import Callable
from typing import Any

from elasticsan_snapshotter.csi._generated import csi_pb2 as pb
from elasticsan_snapshotter.csi._generated import csi_pb2_grpc as pb_grpc

# The service module has no type stubs; these names give its two entry points a signature.
add_identity_servicer: Callable[[Any, Any], None] = pb_grpc.add_IdentityServicer_to_server
add_controller_servicer: Callable[[Any, Any], None] = pb_grpc.add_ControllerServicer_to_server

__all__ = ["add_controller_servicer", "add_identity_servicer", "pb", "pb_grpc"]
