"""The generated modules under short names: ``pb`` (messages) and ``pb_grpc`` (services)."""

from collections.abc import Callable
from typing import Any

from elasticsan_snapshotter.freeze._generated import freeze_pb2 as pb
from elasticsan_snapshotter.freeze._generated import freeze_pb2_grpc as pb_grpc

# The service module has no type stubs; these names give its entry points a signature.
add_agent_servicer: Callable[[Any, Any], None] = pb_grpc.add_FreezeAgentServicer_to_server
add_local_servicer: Callable[[Any, Any], None] = pb_grpc.add_FreezeAgentLocalServicer_to_server
AgentStub: Callable[[Any], Any] = pb_grpc.FreezeAgentStub
LocalStub: Callable[[Any], Any] = pb_grpc.FreezeAgentLocalStub

__all__ = ["AgentStub", "LocalStub", "add_agent_servicer", "add_local_servicer", "pb", "pb_grpc"]
