"""The call context: who asks, through which door, until when — built once per request.

Every way a request reaches the engine (ferry's HTTP/1.1 protocol, the ASGI app under any
server, gRPC, ferry's own background work) builds one :class:`CallContext` and passes it to
every :class:`~ferry.engine.Engine` call: inference, and also metadata, readiness, the
repository index, load and unload. The engine's policy chain (:mod:`ferry.policy`) reads
it; below the engine nothing does, so no model, batch or runtime ever learns which door a
request came through.

It is a leaf (imports nothing of ferry): transports build it, the engine and the policies
read it, and security code can set :attr:`CallContext.principal` without importing either.

The credentials a client presented are kept for the policies that check them and for
nothing else: they are left out of ``repr()`` (so out of tracebacks, log lines and test
output) and no log formatter reads them.
"""

from __future__ import annotations

import time
from typing import Literal

__all__ = ["INTERNAL", "CallContext", "Protocol", "internal_call"]

#: The transport a call came by; "internal" is ferry's own work (the repository watcher).
Protocol = Literal["rest", "grpc", "internal"]


class CallContext:
    """One call to the engine: its id, its door, its peer, its deadline, its credentials.

    Attributes:
        request_id: the id answered to the client and written on every log line.
        protocol: ``"rest"``, ``"grpc"`` or ``"internal"``.
        door: which code path built it: ``"http11"`` (ferry's HTTP/1.1 protocol answering
            an inference request itself), ``"asgi"`` (the Starlette app, under ferry's
            protocol or any ASGI server), ``"grpc"``, or a name for ferry's own work.
        peer: the client's address as ``host:port`` (None when unknown).
        deadline: absolute ``time.monotonic()`` after which the answer is no longer wanted
            (from the client: gRPC's deadline, REST's ``X-Ferry-Timeout-Ms`` header; the
            engine also reads the V2 ``timeout`` parameter and the server's default).
        problem: what was wrong with the call's own metadata (a malformed timeout header),
            found by the transport and raised by the engine before anything else, so that
            every door answers it as it answers any engine error; None when nothing was.
        credentials: what the client presented (the ``Authorization`` header's value, or
            gRPC's ``authorization`` metadata), for the policies to check; never logged.
        certificate: the common name (CN) of the client certificate the TLS handshake
            verified (mTLS); None without one. Not a principal by itself: the
            authenticating policy decides whether it may stand for one.
        principal: who the caller is once a policy has authenticated it (None before).
        grants: what the authenticated caller may do, as ``(role, model-name pattern)``
            pairs set by the authenticating policy, for the authorizing one (``None``: no
            policy said).
        fallback: ``name:version`` of the configured fallback that answered an inference
            call in place of the version asked for (its circuit breaker open or its queue
            full), set by the engine for the door to say so in its answer; None otherwise.
    """

    __slots__ = ("certificate", "credentials", "deadline", "door", "fallback", "grants",
                 "peer", "principal", "problem", "protocol", "request_id")

    def __init__(self, request_id: str, protocol: Protocol, door: str, *,
                 peer: str | None = None, deadline: float | None = None,
                 credentials: str | None = None, certificate: str | None = None) -> None:
        self.request_id = request_id
        self.protocol = protocol
        self.door = door
        self.peer = peer
        self.deadline = deadline
        self.credentials = credentials
        self.certificate = certificate
        self.principal: str | None = None
        self.grants: tuple[tuple[str, str], ...] | None = None
        self.problem: Exception | None = None
        self.fallback: str | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (negative once passed), None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def __repr__(self) -> str:
        shown = "<hidden>" if self.credentials is not None else "None"
        return (f"CallContext(request_id={self.request_id!r}, protocol={self.protocol!r}, "
                f"door={self.door!r}, peer={self.peer!r}, deadline={self.deadline!r}, "
                f"credentials={shown}, certificate={self.certificate!r}, "
                f"principal={self.principal!r})")


def internal_call(door: str) -> CallContext:
    """A context for ferry's own work (``door`` names it, e.g. ``"repository-watch"``)."""
    call = CallContext(f"ferry-{door}", "internal", door)
    call.principal = "ferry"
    return call


#: The context of calls ferry makes for itself with no more specific name (tests, startup).
INTERNAL = internal_call("internal")
