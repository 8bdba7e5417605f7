"""The call context of a gRPC call, built in this one place for every RPC.

Each RPC of the inference service (and the health service's) starts by building its
:class:`~ferry.call.CallContext` here from the call's metadata and deadline, and passes it
to the engine; nothing else in the gRPC front end reads metadata.
"""

from __future__ import annotations

import os
import time

import grpc

from ferry.call import CallContext

__all__ = ["call_context", "fresh_id"]

_MAX_ID = 128


def fresh_id() -> str:
    """A random version-4 UUID as 32 hex digits: ``uuid.uuid4().hex`` without its object.

    The same 122 random bits from ``os.urandom`` and the same version and variant bits, in a
    third of the time (this runs for every call that brings no id of its own).
    """
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40  # version 4
    data[8] = (data[8] & 0x3F) | 0x80  # variant RFC 4122
    return data.hex()


def call_context(context: grpc.aio.ServicerContext, request_id: str = "", *,
                 certificates: bool = False) -> CallContext:
    """The context of the call ``context`` belongs to.

    The request id is the ``x-request-id`` metadata (short printable text), else
    ``request_id`` (the V2 request's own ``id``), else a fresh one; the deadline is the
    call's gRPC deadline; the credentials are the ``authorization`` metadata. With
    ``certificates`` (the port requires client certificates), the certificate is the
    common name grpc's TLS verified (``x509_common_name`` of the auth context); otherwise
    the auth context is not read (it costs ~0.6 µs a call).
    """
    rid = credentials = None
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            if isinstance(value, str) and 0 < len(value) <= _MAX_ID and value.isprintable():
                rid = value
        elif key == "authorization" and isinstance(value, str):
            credentials = value
    remaining = context.time_remaining()
    if not rid:
        rid = request_id if 0 < len(request_id) <= _MAX_ID else fresh_id()
    certificate = None
    if certificates:
        names = context.auth_context().get("x509_common_name")
        if names:
            certificate = next(iter(names)).decode("utf-8", "replace")
    return CallContext(rid, "grpc", "grpc", peer=context.peer() or None,
                       deadline=None if remaining is None else time.monotonic() + remaining,
                       credentials=credentials, certificate=certificate)
