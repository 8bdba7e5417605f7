"""Contract D: build the gRPC server that serves the engine (not started).

One ``grpc.aio`` server carries three services: the V2 ``GRPCInferenceService``, the
standard ``grpc.health.v1.Health`` (SERVING when the engine is ready) and server reflection
(so ``grpcurl`` and reflection clients discover the API). ``server.py`` starts and stops it on
the event loop that runs the engine and the REST server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ferry.engine import Engine
from ferry.errors import ConfigError
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc.health import ReadinessHealthServicer
from ferry.protocols.grpc.servicer import InferenceServicer

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "SERVICE_NAME", "bind", "build_server", "create_server"]

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20


def create_server(engine: Engine, *, host: str, port: int,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.aio.Server:
    """Build the server for ``engine`` and bind it to ``host:port``; do not start it.

    Call it from the event loop that will run the server.

    Raises:
        ConfigError: the address cannot be bound (in use without SO_REUSEPORT, bad host).
    """
    server = build_server(engine, max_message_bytes=max_message_bytes)
    bind(server, host, port)
    return server


def build_server(engine: Engine, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
                 ) -> grpc.aio.Server:
    """Build the server with its three services but no port (see :func:`bind`).

    Args:
        engine: the engine the inference service calls.
        max_message_bytes: the largest request accepted; a bigger one is refused by gRPC
            itself with RESOURCE_EXHAUSTED before any of it is parsed.
    """
    if max_message_bytes <= 0:
        raise ConfigError(f"max_message_bytes must be positive, got {max_message_bytes}")
    server = grpc.aio.server(options=[
        # Several `ferry serve --workers N` processes listen on the same port; the kernel
        # spreads connections among them.
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Outputs are bounded by the model and the (bounded) input; clients set their own
        # receive limit.
        ("grpc.max_send_message_length", -1),
    ])
    _add_inference_service(server, InferenceServicer(engine))
    health_service = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    health_pb2_grpc.add_HealthServicer_to_server(
        ReadinessHealthServicer(engine, [SERVICE_NAME]), server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_service, reflection.SERVICE_NAME], server, pool=_reflection_pool())
    return server


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    """Listen on ``host:port`` (port 0 picks a free one) and return the port bound.

    Raises:
        ConfigError: the address cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        bound, reason = 0, str(exc)
    else:
        reason = "the port is taken or the host is not an address of this machine"
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {address}: {reason}",
                          hint="choose another port with --grpc-port, or stop what uses it")
    return bound


def _add_inference_service(server: grpc.aio.Server, servicer: InferenceServicer) -> None:
    """Register the service as the generated ``add_..._to_server`` does, but parse leniently.

    With the generated deserializers, bytes that are not a valid protobuf make gRPC answer
    INTERNAL ("Exception deserializing request!"), a server error for a client's mistake.
    Here such a request reaches a guard that answers INVALID_ARGUMENT instead.
    """
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name)),
            request_deserializer=_lenient(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _Malformed:
    """Stands in for a request whose bytes protobuf could not parse."""

    __slots__ = ("problem", "type_name")

    def __init__(self, type_name: str, problem: str) -> None:
        self.type_name = type_name
        self.problem = problem


def _lenient(message_type: Any) -> Callable[[bytes], Any]:
    parse = message_type.FromString
    name = message_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Malformed(name, str(exc) or "not a protobuf message")

    return deserialize


def _guarded(method: Callable[[Any, Any], Awaitable[Any]]
             ) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handle(request: Any, context: Any) -> Any:
        if type(request) is _Malformed:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request.type_name} message: {request.problem}",
            )
        return await method(request, context)

    return handle


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    # ferry's messages live in their own pool (see scripts/generate_grpc.py); reflection
    # needs one pool that knows all three services, so copy their files into a fresh one.
    pool = descriptor_pool.DescriptorPool()
    for file in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    return pool
