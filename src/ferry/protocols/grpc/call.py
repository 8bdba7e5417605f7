"""The call context of a gRPC call, built in this one place for every RPC.

Each RPC of the inference service (and the health service's) starts by building its
:class:`~ferry.call.CallContext` here from the call's metadata and deadline, and passes it
to the engine; nothing else in the gRPC front end reads metadata.
"""

from __future__ import annotations

import time
import uuid

import grpc

from ferry.call import CallContext

__all__ = ["call_context"]

_MAX_ID = 128


def call_context(context: grpc.aio.ServicerContext, request_id: str = "") -> CallContext:
    """The context of the call ``context`` belongs to.

    The request id is the ``x-request-id`` metadata (short printable text), else
    ``request_id`` (the V2 request's own ``id``), else a fresh one; the deadline is the
    call's gRPC deadline; the credentials are the ``authorization`` metadata.
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
        rid = request_id if 0 < len(request_id) <= _MAX_ID else uuid.uuid4().hex
    return CallContext(rid, "grpc", "grpc", peer=context.peer() or None,
                       deadline=None if remaining is None else time.monotonic() + remaining,
                       credentials=credentials)
