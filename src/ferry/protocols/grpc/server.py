"""Build the gRPC server that serves the engine (not started).

One ``grpc.aio`` server carries three services: the V2 ``GRPCInferenceService``, the
standard ``grpc.health.v1.Health`` (SERVING when the engine is ready) and server reflection
(so ``grpcurl`` and reflection clients discover the API). ``server.py`` starts and stops it on
the event loop that runs the engine and the REST server.

What one client can make the server hold is bounded (:class:`GrpcLimits`, listed in
``docs/serving.md``): streams per connection, calls in total, idle connections, the size of
a message; compressed requests are refused, so the wire size of a message is its size. One
option, ``grpc.http.overload_protection``, is marked experimental by grpc (tested with
grpcio 1.85): ``test_grpc_bounds.py`` fails if a grpc release changes what it does.
Every service parses its requests leniently, so bytes that are not a valid message are
answered INVALID_ARGUMENT by all three alike.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ferry.engine import Engine
from ferry.errors import ConfigError
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc.health import ReadinessHealthServicer
from ferry.protocols.grpc.servicer import InferenceServicer

if TYPE_CHECKING:  # ferry.security needs the security extra; a plain port does not
    from ferry.security.tls import Pem, ServerTls

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "SERVICE_NAME", "GrpcLimits", "bind", "build_server"]

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20

_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]

#: grpc's bit for "identity" in ``grpc.compression_enabled_algorithms_bitset``; with only it
#: set, a call that sends ``grpc-encoding: gzip`` (or deflate) is answered UNIMPLEMENTED.
_IDENTITY_ONLY = 1


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """What one client may make the gRPC server hold, and for how long.

    The size of one message is the server's ``max_message_bytes`` (RESOURCE_EXHAUSTED
    beyond it, before it is parsed). With both counts below, responses that a client does
    not read are held for at most ``max_concurrent_streams`` calls per connection and
    ``max_concurrent_rpcs`` in all.
    """

    #: Calls one HTTP/2 connection may have open at once, announced to the client as
    #: ``SETTINGS_MAX_CONCURRENT_STREAMS``: grpc clients queue further calls themselves; a
    #: stream opened past it anyway is reset with ``REFUSED_STREAM``.
    max_concurrent_streams: int = 100
    #: Calls the server runs at once over all connections (health ``Watch`` and reflection
    #: streams included, and calls whose answer waits for a client that does not read it):
    #: a call past it is answered RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 1024
    #: Seconds a connection with no call open stays open; then the server sends ``GOAWAY``
    #: and closes it (a grpc channel reconnects by itself on its next call).
    max_connection_idle: float = 300.0
    #: Seconds a new connection may take to complete its handshake (TLS, then HTTP/2's
    #: preface and settings); a connection that is still silent or half-way then is closed,
    #: so clients that connect and send nothing, or trickle, hold a socket only that long
    #: (grpc's default is 120 s).
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        """Refuse a limit that would stop every call (``ConfigError``: not positive)."""
        for name in ("max_concurrent_streams", "max_concurrent_rpcs", "max_connection_idle",
                     "handshake_timeout"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"gRPC limit {name} must be positive, got {value}")


_DEFAULT_LIMITS = GrpcLimits()


def build_server(engine: Engine, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 limits: GrpcLimits = _DEFAULT_LIMITS,
                 client_certificates: bool = False,
                 health: ReadinessHealthServicer | None = None) -> grpc.aio.Server:
    """Build the server with its three services but no port (see :func:`bind`).

    Args:
        engine: the engine the inference service calls.
        max_message_bytes: the largest request accepted; a bigger one is refused by gRPC
            itself with RESOURCE_EXHAUSTED before any of it is parsed.
        limits: streams per connection, calls in total and the idle time of a connection.
        client_certificates: the port will require client certificates (``bind`` with a
            client CA): each call context then carries the certificate's common name.
        health: the ``grpc.health.v1`` servicer to serve (one over ``engine`` by default);
            given, its caller can end its ``Watch`` streams on a stop (``finish()``).

    Raises:
        ConfigError: ``max_message_bytes`` is not positive.
    """
    if max_message_bytes <= 0:
        raise ConfigError(f"max_message_bytes must be positive, got {max_message_bytes}")
    server = grpc.aio.server(options=_options(max_message_bytes, limits),
                             maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
    _add_service(server, pb.DESCRIPTOR.services_by_name["GRPCInferenceService"], pb,
                 InferenceServicer(engine, client_certificates=client_certificates))
    if health is None:
        health = ReadinessHealthServicer(engine, [SERVICE_NAME],
                                         client_certificates=client_certificates)
    _add_service(server, _HEALTH, health_pb2, health)
    names = [SERVICE_NAME, _HEALTH.full_name, reflection.SERVICE_NAME]
    _add_service(server, _REFLECTION, reflection_pb2,
                 reflection.aio.ReflectionServicer(names, pool=_reflection_pool()))
    return server


def _options(max_message_bytes: int, limits: GrpcLimits) -> list[tuple[str, Any]]:
    return [
        # Several `ferry serve --workers N` processes listen on the same port; the kernel
        # spreads connections among them.
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Outputs are bounded by the model and the (bounded) input; clients set their own
        # receive limit.
        ("grpc.max_send_message_length", -1),
        # A response the client does not read stays in memory until its stream ends; this
        # bounds how many one connection can hold (without it, thousands per connection).
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        # grpc's (experimental, default on) "overload protection" counts a stream until the
        # server has freed its call, after the client has seen it end: clients then open
        # streams the server refuses, and busy channels fail calls with UNAVAILABLE. Off,
        # the count is HTTP/2's, as clients keep it.
        ("grpc.http.overload_protection", 0),
        ("grpc.max_connection_idle_ms", round(limits.max_connection_idle * 1000)),
        ("grpc.server_handshake_timeout_ms", round(limits.handshake_timeout * 1000)),
        # gzip turns 63 KiB on the wire into a 63 MiB message; refusing compression keeps
        # what a client makes the server hold and parse to what it sends.
        ("grpc.compression_enabled_algorithms_bitset", _IDENTITY_ONLY),
    ]


def bind(server: grpc.aio.Server, host: str, port: int, tls: ServerTls | None = None) -> int:
    """Listen on ``host:port`` (port 0 picks a free one) and return the port bound.

    With ``tls`` the port speaks TLS (1.2 and 1.3, grpc's defaults) with its certificate,
    and requires client certificates when it has a client CA. grpc asks
    :func:`_certificate_fetcher` for each new connection, so a :meth:`ServerTls.reload`
    reaches new connections; open ones keep theirs.

    Raises:
        ConfigError: the address cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        if tls is None:
            bound = int(server.add_insecure_port(address))
        else:
            bound = int(server.add_secure_port(address, _credentials(tls)))
    except RuntimeError as exc:
        bound, reason = 0, str(exc)
    else:
        reason = "the port is taken or the host is not an address of this machine"
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {address}: {reason}",
                          hint="choose another port with --grpc-port, or stop what uses it")
    return bound


def _credentials(tls: ServerTls) -> grpc.ServerCredentials:
    pem = tls.pem()
    return grpc.dynamic_ssl_server_credentials(
        _configuration(pem), _certificate_fetcher(tls, pem.generation),
        require_client_authentication=pem.client_ca is not None)


def _configuration(pem: Pem) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(pem.key, pem.cert_chain)], root_certificates=pem.client_ca)


def _certificate_fetcher(tls: ServerTls, generation: int
                         ) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
    """The callback grpc calls (on its threads) for each new connection: new files, once."""
    served = generation

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        nonlocal served
        pem = tls.pem()
        if pem.generation == served:
            return None  # unchanged: grpc keeps what it has
        served = pem.generation
        return _configuration(pem)

    return fetch


def _add_service(server: grpc.aio.Server, service: ServiceDescriptor, messages: ModuleType,
                 servicer: object) -> None:
    """Register ``servicer`` as the generated ``add_..._to_server`` does, but parse leniently.

    With the generated deserializers, bytes that are not a valid protobuf make gRPC answer
    INTERNAL or UNKNOWN ("Exception deserializing request!"), a server error for a client's
    mistake. Here such a request reaches a guard that answers INVALID_ARGUMENT instead.
    """
    handlers = {method.name: _method_handler(method, messages, getattr(servicer, method.name))
                for method in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _method_handler(method: MethodDescriptor, messages: ModuleType,
                    behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler:
    request_type = getattr(messages, method.input_type.name)
    response_type = getattr(messages, method.output_type.name)
    codec: dict[str, Any] = {"request_deserializer": _lenient(request_type),
                             "response_serializer": response_type.SerializeToString}
    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(_guarded_stream(behaviour), **codec)
    if method.client_streaming:  # none of ferry's three services has one
        raise TypeError(f"{method.full_name}: request-stream-only methods are not guarded")
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(_guarded(behaviour), **codec)
    return grpc.unary_unary_rpc_method_handler(_guarded(behaviour), **codec)


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


async def _refuse_malformed(context: Any, request: _Malformed) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {request.type_name} message: {request.problem}",
    )


def _guarded(method: Callable[[Any, Any], Awaitable[Any]]
             ) -> Callable[[Any, Any], Awaitable[Any]]:
    """``method`` (one request in) behind a check that the request parsed.

    ``method`` is a coroutine function; grpc.aio streams the responses of one that takes one
    request with ``context.write`` (as health's ``Watch`` does).
    """
    async def handle(request: Any, context: Any) -> Any:
        if type(request) is _Malformed:
            await _refuse_malformed(context, request)
        return await method(request, context)

    return handle


def _guarded_stream(method: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``method`` (a stream of requests in, e.g. reflection) seeing only requests that parsed.

    The first malformed request ends the call with INVALID_ARGUMENT. Only an async generator
    (reflection's kind) is guarded: one that read requests with ``context.read()`` would
    bypass the check.
    """
    if not inspect.isasyncgenfunction(method):
        raise TypeError(f"{method.__qualname__}: only async generators take guarded streams")

    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            if type(request) is _Malformed:
                await _refuse_malformed(context, request)
            yield request

    async def stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for response in method(checked(requests, context), context):
            yield response

    return stream


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    # ferry's messages live in their own pool (see scripts/generate_grpc.py); reflection
    # needs one pool that knows all three services, so copy their files into a fresh one.
    pool = descriptor_pool.DescriptorPool()
    for file in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    return pool
