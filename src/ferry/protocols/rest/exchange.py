"""One inference exchange as every REST route runs it: errors, metrics, request id.

The V2, ``/predict`` and TF-Serving routes differ only in how they decode and encode; each
hands :func:`exchange` a coroutine that does that work, and gets back the response with
ferry errors turned into ``{"error": ...}`` answers and the request counted (``Metrics``).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferry.call import CallContext
from ferry.errors import FerryError, InputError
from ferry.observability.logging import FIELD_MAX, LineBudget, clip
from ferry.protocols.rest.errors import error_response, status_of
from ferry.protocols.rest.head import Head

if TYPE_CHECKING:
    from ferry.engine import Engine
    from ferry.observability.metrics import Metrics

_log = logging.getLogger("ferry.rest")
#: Refusals are logged one line each, up to this budget a second (the rest are counted).
_refusal_lines = LineBudget(_log, "refused REST requests")

__all__ = ["Answer", "RestContext", "call_of", "exchange", "fresh_id", "json_response",
           "peer_of", "refusal", "rest_call"]


@dataclass(slots=True)
class RestContext:
    """What every route needs: the engine, its metrics, and the body size limit."""

    engine: Engine
    metrics: Metrics
    max_body_bytes: int


@dataclass(slots=True)
class Answer:
    """A successful exchange: the response and the model version that answered."""

    response: Response
    version: str


# A fresh request id: this process's random prefix and a counter (32 hex digits, like a
# uuid4's). Unique within the process by the counter and across processes and restarts by
# the 64 random bits, at a fraction of uuid4's cost (a getrandom call per request).
_ID_PREFIX = os.urandom(8).hex().encode("ascii")
_ids = itertools.count(int.from_bytes(os.urandom(4), "big"))


def fresh_id() -> bytes:
    """A new request id (see above)."""
    return b"%s%016x" % (_ID_PREFIX, next(_ids) & 0xFFFF_FFFF_FFFF_FFFF)


def rest_call(rid: bytes, door: str, peer: str | None, head: Head | None,
              certificate: str | None = None) -> CallContext:
    """The call context of a REST request (every REST door builds it here).

    ``certificate`` is the common name of the client certificate the connection's TLS
    handshake verified (mTLS), if any. The deadline comes from ``X-Ferry-Timeout-Ms``; a
    malformed value is the call's ``problem`` (400 from the engine, on every door).
    """
    credentials = None
    if head is None:
        return CallContext(rid.decode("ascii"), "rest", door, peer=peer,
                           certificate=certificate)
    if head.authorization is not None:
        credentials = head.authorization.decode("latin-1")
    call = CallContext(rid.decode("ascii"), "rest", door, peer=peer, credentials=credentials,
                       certificate=certificate)
    if head.timeout is not None:
        try:
            call.deadline = deadline_after(timeout_ms(head.timeout))
        except InputError as error:
            call.problem = error
    return call


#: The longest timeout a client may ask for (a day): longer ones are surely mistakes.
MAX_TIMEOUT_MS = 86_400_000.0


def timeout_ms(value: bytes) -> float:
    """The milliseconds of an ``X-Ferry-Timeout-Ms`` value (digits, optionally a fraction).

    Raises:
        InputError: not a plain positive decimal number of at most a day's milliseconds.
    """
    text = value.decode("latin-1").strip()
    body = text.replace(".", "", 1)
    if not (0 < len(text) <= 20 and body.isascii() and body.isdigit()):
        raise InputError(f"X-Ferry-Timeout-Ms must be a number of milliseconds such as 250, "
                         f"got {clip(text, 40)!r}")
    ms = float(text)
    if not 0 < ms <= MAX_TIMEOUT_MS:
        raise InputError(f"X-Ferry-Timeout-Ms must be more than 0 and at most "
                         f"{MAX_TIMEOUT_MS:.0f} (a day), got {text}")
    return ms


def deadline_after(ms: float) -> float:
    """The ``time.monotonic()`` deadline ``ms`` milliseconds from now."""
    return monotonic() + ms / 1000.0


def peer_of(address: Any) -> str | None:
    """``host:port`` of an ASGI ``client`` / socket peer address (None when unknown)."""
    if isinstance(address, tuple | list) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return None


def call_of(request: Request) -> CallContext:
    """The call context the app's outer middleware built for ``request``."""
    call: CallContext = request.scope["state"]["call"]
    return call


async def exchange(ctx: RestContext, model: str,
                   work: Callable[[], Awaitable[Answer]], *,
                   version: str | None = None) -> Response:
    """Run ``work`` for ``model`` (``version``): answer ferry errors as JSON, count the request.

    Requests for a model or version the server does not serve are counted under the label
    ``""`` (:class:`~ferry.observability.metrics.Metrics` maps them), so that arbitrary
    names in URLs cannot grow the metrics without bound.
    """
    start = perf_counter()
    try:
        answer = await work()
    except FerryError as error:
        return refusal(ctx, model, error, start, version=version)
    ctx.metrics.request(model=model, version=answer.version, protocol="rest", status="200",
                        seconds=perf_counter() - start)
    return answer.response


def refusal(ctx: RestContext, model: str, error: FerryError, start: float, *,
            version: str | None = None) -> Response:
    """The answer to a refused request: counted, logged once, ``{"error": ...}``.

    Counted under the model and version the client named, as gRPC counts its refusals;
    the metrics keep only names the server serves.
    """
    status = status_of(error)
    ctx.metrics.request(model=model, version=version or "", protocol="rest",
                        status=str(status), seconds=perf_counter() - start)
    # One line per refused request (the JSON log adds the request id): what an operator
    # needs to answer "why did my call fail?". Successes are counted, not logged.
    # Client-supplied strings are clipped: a client must not write more log than it sends.
    if not _refusal_lines.allow():
        return error_response(error, status)
    shown = clip(model) if model else "(no model)"
    _log.info("refused %s with %d: %s", shown, status, clip(error.message, 2 * FIELD_MAX),
              extra={"model": clip(model), "status": status})
    return error_response(error, status)


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON response written by orjson (numpy arrays included)."""
    return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")
