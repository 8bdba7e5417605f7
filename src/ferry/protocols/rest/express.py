"""The REST port's own HTTP/1.1 protocol: plain inference requests answered without uvicorn.

Measured on one core with the seed network, uvicorn's protocol costs several times what the
model does: per request it builds an ASGI scope, a ``RequestResponseCycle`` with an
``asyncio.Event``, a keep-alive timer, and runs a dozen parser callbacks through Python.
A no-op answer through it reaches about 17k requests/s on the benchmark machine, while a
bare ``asyncio.Protocol`` reaches about 110k. :class:`ExpressProtocol` is that bare protocol
for the one request shape the benchmark and every inference client send:

    POST <inference route> HTTP/1.1, a Content-Length body within the limit, JSON or V2
    binary content, no Transfer-Encoding / Content-Encoding / Expect / Upgrade, and no
    Connection header other than keep-alive.

Such a request is recognised by a strict reading of its head (one regular expression over
the whole head: CRLF line ends only, token header names, no folded lines, one
Content-Length) and answered by :func:`~ferry.protocols.rest.hot.answer`, the function the
ASGI routes use, so the answers are the same. Its reply goes out in one write.

Anything else, at the first byte of the first request that is not of that shape, hands the
connection over to uvicorn's own protocol (:class:`~ferry.protocols.rest.lane.LaneProtocol`),
exactly as uvicorn hands a connection to its WebSocket protocol on an upgrade: the
unanswered bytes are replayed into it and the transport is switched. From then on uvicorn
(httptools) parses that connection and decides everything: malformed requests, chunked
bodies, ``100-continue``, HTTP/1.0, ``Connection: close``, large bodies, every other route.
So the hand-written reading only ever *accepts* a subset of HTTP that httptools also
accepts; it never answers an error itself.

Requests on one connection are answered in order: the next request is read only once the
current one is answered (a pipelined burst is answered one by one; batching happens across
connections, which is where load comes from). Graceful shutdown, keep-alive timeout and
write back-pressure follow uvicorn's behaviour: the protocol registers in uvicorn's
``server_state.connections`` (a stopping server waits for them), closes an idle connection
on ``shutdown()``, and finishes the answer in flight first.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
from collections.abc import Coroutine
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ferry.protocols.rest.exchange import RestContext, client_request_id, fresh_id
from ferry.protocols.rest.hot import (
    Headers,
    Route,
    answer_logged,
    binary_header,
    match,
    plain_length,
)
from ferry.protocols.rest.lane import answer_bytes, lane_protocol

__all__ = ["ExpressProtocol", "express_protocol"]

_log = logging.getLogger("ferry.rest")

#: A request head longer than this is left to uvicorn (which applies its own limits).
MAX_HEAD = 16 << 10
#: Bodies up to this size are read here; larger ones go to uvicorn, which streams them.
MAX_BODY = 4 << 20
#: Bytes buffered beyond the request being answered before reading pauses (a client that
#: pipelines without reading its answers must not grow the buffer without bound).
_BUFFER_LIMIT = MAX_BODY + MAX_HEAD

# The whole head of a request the fast path may take (RFC 9112 syntax, strictly): a POST of
# an origin-form target over HTTP/1.1, then header fields with token names, no whitespace
# before the colon, visible ASCII/space/tab values, CRLF line ends only (no bare CR or LF,
# no folded lines). A head that does not match is uvicorn's to parse.
_HEAD = re.compile(
    rb"POST (/[!-~]*) HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
)
_FIELD_SEP = b"\r\n"
#: Headers whose presence means the request is not plain (uvicorn decides what they mean).
_NOT_PLAIN = frozenset((b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"))


def express_protocol(ctx: RestContext) -> type[ExpressProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, answering over ``ctx``.

    Connections it hands over go to uvicorn's protocol with the lane over the same ``ctx``
    (:func:`~ferry.protocols.rest.lane.lane_protocol`).
    """
    return type("ExpressProtocol", (ExpressProtocol,),
                {"ctx": ctx, "fallback": lane_protocol(ctx)})


class _Plain:
    """What a plain request's head says: route, parameters, body length, binary, request id.

    Immutable: the same head (byte for byte) always reads the same, so readings are cached.
    """

    __slots__ = ("binary", "length", "params", "request_id", "route")

    def __init__(self, route: Route, params: dict[str, str], headers: Headers,
                 length: int) -> None:
        self.route = route
        self.params = params
        self.length = length
        self.binary = binary_header(headers)
        #: The client's X-Request-ID when it is usable, else None (a fresh one per request).
        self.request_id = client_request_id(headers)


#: Heads already read (exact bytes -> reading, None for "not plain"). A client sends the
#: same head for every request of one shape, so most requests skip the reading entirely.
#: Emptied when full, so that heads that differ every time cannot grow it.
_HEADS: dict[bytes, _Plain | None] = {}
_HEADS_MAX = 512


class ExpressProtocol(asyncio.Protocol):
    """HTTP/1.1 for plain inference requests; everything else handed to uvicorn."""

    ctx: RestContext
    fallback: type[HttpToolsProtocol]

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.connections: set[Any] = server_state.connections
        self.transport: asyncio.Transport | None = None
        self.limit = min(self.ctx.max_body_bytes, MAX_BODY)
        self.keep_alive_seconds = float(config.timeout_keep_alive)
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._pending: tuple[_Plain, int, int] | None = None  # head read, body arriving
        self._busy = False  # a request is being answered
        self._draining = False  # inside _drain(): completions must not re-enter it
        self._close_after = False  # shutdown() came while busy: close after the answer
        self._lost = False
        self._write_paused = False
        self._read_paused = False
        self._last_active = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)
        self._last_active = self.loop.time()
        self._arm_keep_alive(self.keep_alive_seconds)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._lost = True
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buf = b""
        self._pending = None

    def eof_received(self) -> None:  # noqa: D102 (as uvicorn: the transport closes)
        return None

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self._last_active = self.loop.time()
        if self._pos < len(self._buf):
            buf = self._buf
            if not isinstance(buf, bytearray):
                buf = bytearray(memoryview(buf)[self._pos:])
                self._pos = 0
            buf += data
            self._buf = buf
        else:
            self._buf, self._pos = data, 0
        if not self._busy:
            self._drain()
        elif len(self._buf) - self._pos > _BUFFER_LIMIT and not self._read_paused:
            self._read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def pause_writing(self) -> None:  # noqa: D102
        self._write_paused = True

    def resume_writing(self) -> None:  # noqa: D102
        self._write_paused = False
        if not self._busy and not self._lost:
            self._drain()

    # ------------------------------------------------------------------ uvicorn's server

    def shutdown(self) -> None:
        """Called by uvicorn's server on a graceful stop: close now, or after the answer.

        A request being answered, or whose body is still arriving, is answered first (as
        uvicorn does); the connection closes after that answer.
        """
        if self._busy or self._pending is not None:
            self._close_after = True
        elif self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ reading

    def _drain(self) -> None:
        """Answer the complete requests in the buffer, one at a time, while not busy."""
        self._draining = True
        try:
            while not self._busy and not self._write_paused and not self._lost:
                buf, pos = self._buf, self._pos
                if pos >= len(buf):
                    self._buf, self._pos = b"", 0
                    break
                pending = self._pending
                if pending is None:
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        # A head ended by bare LFs (which httptools accepts), or longer than
                        # a plain head: not for this protocol, and it would wait forever.
                        if len(buf) - pos > MAX_HEAD or buf.find(b"\n\n", pos) >= 0:
                            self._hand_over()
                        break
                    plain = self._read_head(bytes(buf[pos:end + 2]))
                    if plain is None:
                        self._hand_over()
                        return
                    body_start = end + 4
                    body_end = body_start + plain.length
                else:
                    plain, body_start, body_end = pending
                if len(buf) < body_end:
                    self._pending = (plain, body_start, body_end)  # the body is arriving
                    break
                self._pending = None
                body = bytes(buf[body_start:body_end])
                self._pos = body_end
                self._answer(plain, body)
        finally:
            self._draining = False
        if self._read_paused and not self._busy and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _read_head(self, head: bytes) -> _Plain | None:
        """The reading of a request head (through its last CRLF), or None: not plain."""
        try:
            plain = _HEADS[head]
        except KeyError:
            plain = _read_head(head)
            if len(_HEADS) >= _HEADS_MAX:
                _HEADS.clear()
            _HEADS[head] = plain
        if plain is None or plain.length > self.limit:
            return None
        return plain

    def _hand_over(self) -> None:
        """Give the connection, from the unanswered request on, to uvicorn's protocol."""
        assert self.transport is not None
        rest = bytes(self._buf[self._pos:])
        self._buf, self._pos, self._pending = b"", 0, None
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        protocol = self.fallback(config=self.config, server_state=self.server_state,
                                 app_state=self.app_state, _loop=self.loop)
        self._lost = True  # nothing more happens here
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        if self._write_paused:
            protocol.pause_writing()
        if rest:
            protocol.data_received(rest)

    # ------------------------------------------------------------------ answering

    def _answer(self, plain: _Plain, body: bytes) -> None:
        self._busy = True
        # The exchange runs in a context of its own (its request id is a context variable),
        # driven by _step: up to its first wait right here (a model that answers inline
        # finishes now), then on from the done-callback of each future it waits for.
        self._step(self._exchange(plain, body), contextvars.copy_context())

    def _step(self, exchange: Coroutine[Any, Any, None], context: contextvars.Context,
              _done: object = None) -> None:
        """Run ``exchange`` until it waits or ends: what an asyncio task does, minus a task.

        A task per request (creating it, registering it in asyncio's weak set of all tasks,
        scheduling its first step) cost about as much as decoding the request. The exchange
        awaits only plain futures (its batch, a thread's result), which need no task: the
        future's done-callback resumes the coroutine, and ``await`` reads the outcome.
        Nothing cancels an exchange; a stopping server lets it finish (shutdown()).
        """
        try:
            waiting = context.run(exchange.send, None)
        except StopIteration:
            return
        except BaseException:  # _exchange answers every Exception itself; this is the rest
            _log.exception("request aborted")
            self._busy = False
            if self.transport is not None:
                self.transport.close()
            return
        if waiting is None:  # a bare yield (asyncio.sleep(0)): go on at the next loop turn
            self.loop.call_soon(self._step, exchange, context)
            return
        # The coroutine's await marked the future as waited on; a task clears that mark when
        # it takes the future over, as this does.
        waiting._asyncio_future_blocking = False
        waiting.add_done_callback(functools.partial(self._step, exchange, context))

    async def _exchange(self, plain: _Plain, body: bytes) -> None:
        rid = plain.request_id or fresh_id()
        self._write(*await answer_logged(self.ctx, plain.route, plain.params, body,
                                         plain.binary, rid), rid)

    def _write(self, status: int, headers: Headers, payload: bytes, rid: bytes) -> None:
        """Write the whole answer at once, then go on with the connection."""
        self.server_state.total_requests += 1
        self._busy = False
        transport = self.transport
        if self._lost or transport is None or transport.is_closing():
            return
        transport.write(answer_bytes(status, self.server_state.default_headers, headers,
                                     payload, rid, close=self._close_after))
        self._last_active = self.loop.time()
        if self._close_after:
            transport.close()
            return
        if not self._draining:
            self._drain()

    # ------------------------------------------------------------------ keep-alive

    def _arm_keep_alive(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        """Close a connection idle for the keep-alive timeout (one timer per connection).

        uvicorn arms and cancels a timer per request; here one timer per connection looks at
        the time of the last activity when it fires, and re-arms for the rest.
        """
        self._timer = None
        if self._lost or self.transport is None:
            return
        idle = self.loop.time() - self._last_active
        if self._busy or idle < self.keep_alive_seconds:
            self._arm_keep_alive(self.keep_alive_seconds - (0.0 if self._busy else idle))
            return
        self.transport.close()


def _read_head(head: bytes) -> _Plain | None:
    """Read a request head strictly (see the module docstring); None when not plain."""
    found_head = _HEAD.fullmatch(head)
    if found_head is None:
        return None
    target = found_head.group(1)
    path = target.split(b"?", 1)[0] if b"?" in target else target
    found = match(path.decode("ascii"))
    if found is None:
        return None
    route, params = found
    headers: Headers = []
    lengths = types = 0
    start = found_head.end(1) + len(b" HTTP/1.1\r\n")
    for line in head[start:-2].split(_FIELD_SEP) if start < len(head) else ():
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name in _NOT_PLAIN or (name == b"connection" and value.lower() != b"keep-alive"):
            return None
        lengths += name == b"content-length"
        types += name == b"content-type"
        headers.append((name, value))
    # Stricter than the lane (which shares plain_length's rules on length and media type):
    # exactly one Content-Length, a non-empty body, and a Content-Type.
    if lengths != 1 or types == 0:
        return None
    length = plain_length(headers, binary=route == "infer", limit=MAX_BODY)
    if not length:
        return None
    return _Plain(route, params, headers, length)
