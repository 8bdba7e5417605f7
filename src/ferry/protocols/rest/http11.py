"""The REST port's HTTP/1.1 protocol: llhttp reads every request, ferry answers it.

Every connection of the REST port is this one ``asyncio.Protocol``. Requests are read by
llhttp (Node.js's parser, fuzzed and kept by its project) through ``httptools``: request
lines, header fields, ``Content-Length``, chunked bodies and where one request ends and the
next begins are the parser's to decide, never a hand-written reading. What this module adds
around the parser is what makes a server fast and safe:

* **The inference lane.** A plain inference request (``POST`` of an inference route, a
  ``Content-Length`` body of JSON or V2 binary content, no ``Content-Encoding``; see
  :func:`~ferry.protocols.rest.hot.plain_length`) is answered by
  :func:`~ferry.protocols.rest.hot.answer_logged`, the function the ASGI routes use, driven
  without an asyncio task (:meth:`HttpProtocol._step`); its answer is one write. Every other
  request goes to the Starlette app (:func:`~ferry.protocols.rest.asgi_call.call_app`), in
  a task, as uvicorn would run it. Both see the same percent-decoded path, so the same bytes
  reach the same route whatever came before them on the connection.
* **Pipelining.** Parsed requests wait in a queue and are answered one at a time, in order,
  each exactly once. A request the protocol refuses (malformed, too large, too slow) is
  answered after the requests before it, then the connection closes.
* **Bounds** (:class:`~ferry.protocols.rest.limits.HttpLimits`): request target, head size
  and header count, the body limit (413 from ``Content-Length`` before any body is read),
  a read-ahead past which reading pauses until the client reads its answers, and timeouts
  for a head or body still arriving, an idle keep-alive connection and an answer the client
  never reads. Nothing here is cached by client input.

uvicorn still runs the server (sockets, the ``date`` header, graceful shutdown, which calls
:meth:`HttpProtocol.shutdown`): ``uvicorn.Config(http=...)`` takes a protocol class, its
documented seam for custom protocols. With TLS the event loop's SSL transport does the
handshake before :meth:`HttpProtocol.connection_made`, which reads a verified client
certificate (mTLS) once per connection for the lane's call contexts and the app's ASGI TLS
extension; a plain connection pays nothing per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import ssl
from collections import deque
from collections.abc import Coroutine
from typing import Any, NamedTuple, cast
from urllib.parse import unquote

import httptools

from ferry.observability.logging import clip
from ferry.observability.logging import request_id as log_request_id
from ferry.protocols.rest.asgi_call import call_app
from ferry.protocols.rest.body import too_large
from ferry.protocols.rest.errors import error_response, internal_error_response
from ferry.protocols.rest.exchange import RestContext, fresh_id, peer_of, rest_call
from ferry.protocols.rest.head import Head, read_head
from ferry.protocols.rest.hot import answer_logged, match
from ferry.protocols.rest.limits import HttpLimits
from ferry.protocols.rest.routes import Lane
from ferry.protocols.rest.wire import (
    CONTINUE,
    Headers,
    answer_bytes,
    response_bytes,
    unsafe_header,
)

__all__ = ["LAST_CALL", "HttpProtocol", "http_protocol"]

_log = logging.getLogger("ferry.rest")

_POST = b"POST"
_NO_HEADERS: Headers = []  # between heads: _headers is only read while one is being read
_NO_PARSER = httptools.HttpRequestParser(object())  # a lost connection's: no callbacks
_HEAD = "HEAD"

#: Seconds an idle keep-alive connection of a stopping server waits for one last request
#: (answered with ``connection: close``) before it closes (:meth:`HttpProtocol.shutdown`).
LAST_CALL = 1.0


def http_protocol(ctx: RestContext, limits: HttpLimits | None = None) -> type[HttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, answering over ``ctx``."""
    return type("HttpProtocol", (HttpProtocol,), {"ctx": ctx, "limits": limits or HttpLimits()})


class _Refused(Exception):
    """A request the protocol answers itself, with ``status``, before closing the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Target(NamedTuple):
    """What the ASGI scope needs of a request's head (the app's requests only)."""

    method: str
    version: str
    path: str  # percent-decoded once
    raw_path: bytes
    query: bytes


class _Request:
    """One request read by the parser: its head's reading, its body, and how to answer it.

    Built for every request, so it sets few attributes: a plain inference request needs
    only its route, parameters and body; the rest is for the app's requests (``target``)
    and for the rare cases (``expect_continue``, ``refusal``...).
    """

    __slots__ = ("chunks", "complete", "continued", "expect_continue", "head", "headers",
                 "keep_alive", "params", "refusal", "rid", "route", "size", "target")

    def __init__(self, headers: Headers) -> None:
        self.headers = headers
        self.head: Head | None = None
        self.route: Lane | None = None
        self.params: dict[str, str] = _NO_PARAMS
        self.rid: bytes | None = None
        self.chunks: list[bytes] = []
        self.size = 0  # bytes held for it: head, then body
        self.complete = False
        self.keep_alive = True
        self.expect_continue = False
        self.continued = False
        self.refusal: _Refused | None = None
        self.target: _Target | None = None

    def declares_body(self) -> bool:
        """True when the head announces a body (a non-zero length, or a chunked one)."""
        return any((name == b"content-length" and value.strip(b" \t") != b"0")
                   or name == b"transfer-encoding" for name, value in self.headers)

    def body(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_NO_PARAMS: dict[str, str] = {}
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _tls_extension(ssl_object: Any) -> tuple[dict[str, Any], str | None]:
    """The ASGI TLS extension of a connection, and its client certificate's common name.

    ``client_cert_name`` is the verified client certificate's subject (RFC 4514), None
    without mTLS; ``client_cert_chain`` holds that certificate alone (Python's ``ssl``
    exposes no chain before 3.13).
    """
    # Imported here: ferry.security needs the security extra, which TLS implies.
    from ferry.security.tls import peer_names

    names = peer_names(ssl_object)
    der = ssl_object.getpeercert(binary_form=True) if names else None
    extension = {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": names[0] if names else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version()),
        "cipher_suite": None,
    }
    return extension, names[1] if names else None


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 on one connection of the REST port (see the module docstring)."""

    ctx: RestContext
    limits: HttpLimits

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.connections: set[Any] = server_state.connections
        self.keep_alive_seconds = float(config.timeout_keep_alive)
        # Read per request by the parser's callbacks: kept here, one lookup each.
        self._max_target = self.limits.max_target
        self._max_head = self.limits.max_head
        self._max_headers = self.limits.max_headers
        self._max_body = self.ctx.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self._peer: str | None = None
        self._certificate: str | None = None  # a verified client certificate's CN (mTLS)
        self._tls: dict[str, Any] | None = None  # the scope's TLS extension, on TLS only
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[_Request] = deque()  # read, not yet answered; [0] is next
        self._queued = 0  # bytes held by requests behind the one being answered
        self._receiving: _Request | None = None  # head read, body arriving
        self._busy = False  # the front request is being answered
        self._advancing = False  # inside _advance(): an answer must not re-enter it
        self._dead = False  # the parser failed or gave up: read nothing more
        self._closing = False  # shutdown(): close after the answer in flight
        self._eof = False  # the client closed its side: answer what is read, then close
        self._lingering = False  # refused: reading only to drop what still arrives
        self._lost = False
        self._read_paused = False
        self._write_paused = False
        self._gone: asyncio.Event | None = None  # the running ASGI call's disconnect event
        # What the running request waits for: the lane's future, or the app's task; a lost
        # connection cancels it, so its queued work is dropped instead of computed for
        # nobody.
        self._pending: asyncio.Future[Any] | None = None
        # The head being read.
        self._in_head = False
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0
        self._stalled = 0  # bytes read into a header field still incomplete (see _read_head)
        self._trailer_size = 0
        # Times, for the one timer of the connection.
        now = self.loop.time()
        self._last_active = now
        self._last_read = now
        self._head_started = now
        self._write_stalled = now
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        if len(self.connections) >= self.limits.max_connections:
            # Past the cap: closed before a byte is read, the cheapest refusal (limits.py).
            transport.abort()  # type: ignore[attr-defined]
            return
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self._peer = peer_of(transport.get_extra_info("peername"))
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:  # called once the handshake is done: the peer is known
            self._tls, self._certificate = _tls_extension(ssl_object)
        self.connections.add(self)
        self._arm(self.loop.time() + min(self.keep_alive_seconds, self.limits.head_timeout))

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._lost = True
        # The parser holds this protocol's methods (a cycle that only a full garbage
        # collection would free, and a connection lives long enough to reach the oldest
        # generation): break it, and drop what the last head left.
        self._parser = _NO_PARSER
        self._url = b""
        self._headers = _NO_HEADERS
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._receiving = None
        if self._gone is not None:
            self._gone.set()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def eof_received(self) -> bool | None:
        """The client closed its sending side: answer what it sent, then close.

        A half-close is HTTP/1.1's way to say "no more requests" (RFC 9112 9.6), not that
        the client left: requests it sent are still answered. A client that is gone resets
        the connection when the answer reaches it, or at once; connection_lost then cancels
        the work still waiting (and deadlines bound the rest).
        """
        self._eof = True
        if self._lingering:
            return None
        if self._busy or (self._queue and self._queue[0].complete):
            return True  # keep the transport open for the answers
        return None

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self._dead:  # after a refusal: dropped (see _linger)
            return
        self._last_read = self.loop.time()
        in_head, seen = self._in_head, self._head_size + len(self._url)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # The callback's exception and its traceback hold the frames of the callback
            # and of this method (a cycle that only a full collection would free, with the
            # bytes read): keep its status and message only.
            cause, exc.__context__ = exc.__context__, None
            if isinstance(cause, _Refused):
                status, message = cause.status, cause.message
            else:  # a fault of this module, not of the request
                _log.error("HTTP request handling failed", exc_info=cause)
                status, message = 500, "internal error while reading the request"
            if cause is not None:
                cause.__traceback__ = None
            del cause
            self._refuse(status, message)
        except httptools.HttpParserUpgrade:
            self._upgrade()
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {clip(str(exc), 120)}")
        else:
            if self._in_head:
                self._read_head(len(data), in_head and seen == self._head_size + len(self._url))
        if not self._advancing:
            self._advance()

    def pause_writing(self) -> None:  # noqa: D102
        self._write_paused = True
        self._write_stalled = self.loop.time()

    def resume_writing(self) -> None:  # noqa: D102
        self._write_paused = False
        if not self._lost and not self._advancing:
            self._advance()

    # ------------------------------------------------------------------ uvicorn's server

    def shutdown(self) -> None:
        """Called by uvicorn's server on a graceful stop: close after one more answer.

        The request being answered, or whose body or head is arriving, is answered first
        (with ``connection: close``); requests pipelined behind it are not. An idle
        keep-alive connection is not cut (its client may be sending right now): its next
        request is answered with ``connection: close``, and it closes if none begins
        within :data:`LAST_CALL` seconds.
        """
        self._closing = True
        queue = self._queue
        if self._busy or (queue and not queue[0].refusal):
            while len(queue) > 1:
                queue.pop()
            self._queued = 0
            if queue and queue[-1] is not self._receiving:
                self._receiving = None
            return
        if self.transport is None:
            return
        if queue or self._dead:  # a refusal closes it anyway
            self.transport.close()
            return
        self.keep_alive_seconds = min(self.keep_alive_seconds, LAST_CALL)
        self._last_active = self.loop.time()
        self._arm(self._last_active + self.keep_alive_seconds)

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:  # noqa: D102
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_size = 0
        # The time of the read it began in. No timer to move: the connection's timer never
        # sleeps longer than head_timeout (_check_timeouts).
        self._head_started = self._last_read

    def on_url(self, url: bytes) -> None:  # noqa: D102
        self._url += url
        if len(self._url) > self._max_target:
            raise _Refused(414, f"the request target is longer than the limit of "
                                f"{self.limits.max_target} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        if not self._in_head:  # a trailer field of a chunked body: bounded, not kept
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self.limits.max_head:
                raise _Refused(431, "the trailer fields are larger than the limit of "
                                    f"{self.limits.max_head} bytes")
            return
        headers = self._headers
        headers.append((name.lower(), value))
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if size > self._max_head or len(headers) > self._max_headers:
            raise _Refused(431, self._head_too_large())

    def on_headers_complete(self) -> None:  # noqa: D102
        self._in_head = False
        self._trailer_size = 0
        request = self._reading(self._headers)  # (a refusal reads the request id there)
        self._headers = _NO_HEADERS
        request.size = self._head_size + len(self._url)
        if self._queue:
            self._queued += request.size
        self._queue.append(request)
        self._receiving = request

    def on_body(self, body: bytes) -> None:  # noqa: D102
        request = cast(_Request, self._receiving)
        size = len(body)
        request.size += size
        if request is not self._queue[0]:
            self._queued += size
        if request.size > self._max_body:  # a chunked body (Content-Length: at its head)
            raise _Refused(413, str(too_large(0, self._max_body, streamed=True)))
        request.chunks.append(body)

    def on_message_complete(self) -> None:  # noqa: D102
        request = cast(_Request, self._receiving)
        request.complete = True
        request.keep_alive = self._parser.should_keep_alive()
        self._receiving = None

    # ------------------------------------------------------------------ reading a head

    def _reading(self, headers: Headers) -> _Request:
        """What a complete head says: the request, its route, and how to answer it.

        Runs for every request, so it reads the headers in one pass and asks the parser
        only what the request's way of being answered needs.

        Raises:
            _Refused: the head is not one to answer (no valid target, Host, or a body over
                the limit).
        """
        parser = self._parser
        request = _Request(headers)
        try:
            url = httptools.parse_url(self._url)
            raw_path = url.path
            path = raw_path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            raise _Refused(400, "the request target is not a valid origin-form or "
                                "absolute-form URL") from None
        # One routing for every request: the path percent-decoded once (as ASGI servers
        # do), so %2F is a slash; the query and a fragment are not part of it.
        if "%" in path:
            path = unquote(path)
        method = parser.get_method()
        found = match(path) if method == _POST else None
        head = request.head = read_head(headers)
        request.rid = head.request_id
        request.expect_continue = head.expect_continue
        if head.hosts != 1 and parser.get_http_version() == "1.1":
            # RFC 9112 3.2: a server MUST answer 400 to a request with no Host or several.
            raise _Refused(400, "an HTTP/1.1 request needs exactly one Host header "
                                f"(this one has {head.hosts})")
        length = head.length or 0  # llhttp let through digits only, and only one
        if length > self._max_body:
            raise _Refused(413, str(too_large(length, self._max_body)))
        if found is not None and head.fast(binary=found[0] == "infer"):
            # The rule HotRoutes applies for the ASGI app, on the same reading.
            request.route, request.params = found
        else:
            request.target = _Target(method.decode("ascii"), parser.get_http_version(), path,
                                     raw_path, url.query or b"")
        return request

    def _read_head(self, size: int, stalled: bool) -> None:
        """Bound a head still arriving after a read of ``size`` bytes.

        llhttp hands a header field over only once it is complete; until then httptools
        holds its bytes. A read that completed no part of the head went entirely into such
        a field, so those bytes count (``_stalled``) with the fields already complete: a
        head past the limit is refused while at most one read of it is held unseen.
        """
        if stalled:
            self._stalled += size
        else:
            self._stalled = 0
        if self._head_size + len(self._url) + self._stalled > self._max_head:
            self._refuse(431, self._head_too_large())

    def _head_too_large(self) -> str:
        return f"the request head is larger than the limit of {self.limits.max_head} bytes"

    def _upgrade(self) -> None:
        """A request asked to switch protocols: ferry speaks HTTP/1.1 only on this port.

        llhttp stops reading at such a request's head (what follows would be another
        protocol). Without a body it is answered as a plain request, then the connection
        closes; with one (whose length llhttp no longer reads) it is refused.
        """
        request = self._queue[-1] if self._queue else None
        if request is not None and request.complete and not request.declares_body():
            self._dead = True
            request.keep_alive = False
            self._pause_reading()
            return
        self._refuse(400, "protocol upgrades are not supported on this port; send the "
                          "request without an Upgrade header")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` after the requests before this one, then close; read no more."""
        self._dead = True
        self._in_head = False
        queue = self._queue
        # The client's request id, if the refused request's head got that far.
        rid = read_head(self._headers).request_id if self._headers else None
        self._headers = _NO_HEADERS
        if queue and not queue[-1].complete:  # the request being read is the refused one
            refused = queue.pop()
            rid = refused.rid
            if queue:
                self._queued -= refused.size
        self._receiving = None
        request = _Request([])
        request.refusal = _Refused(status, message)
        request.rid = rid
        request.complete = True
        queue.append(request)
        self._pause_reading()

    # ------------------------------------------------------------------ answering, in order

    def _advance(self) -> None:
        """Answer the complete requests at the front of the queue, one at a time."""
        self._advancing = True
        try:
            queue = self._queue
            while not self._busy and queue and not self._write_paused and not self._lost:
                request = queue[0]
                if not request.complete:
                    if self._eof:  # it will never complete
                        self._close()
                    elif request.expect_continue and not request.continued:
                        request.continued = True
                        self._send(CONTINUE)
                    break
                queue.popleft()
                if queue:
                    self._queued -= queue[0].size
                self._busy = True
                if request.refusal is not None:
                    self._answer_refusal(request)
                elif request.route is not None:
                    self._answer_inference(request)
                else:
                    self._answer_app(request)
            if (not self._busy and not queue and not self._lost and not self._lingering
                    and (self._eof or self._dead)):
                self._close()
        finally:
            self._advancing = False
        self._flow()

    def _flow(self) -> None:
        """Pause reading while too much is read ahead of the answers; resume when not."""
        if self._dead or self._lost:
            return
        ahead = len(self._queue) - 1
        if self._queued > self.limits.read_ahead or ahead > self.limits.max_pipelined:
            self._pause_reading()
        elif self._read_paused:
            self._read_paused = False
            self._last_read = self.loop.time()
            assert self.transport is not None
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self._lost:
            self._read_paused = True
            self.transport.pause_reading()

    def _answer_refusal(self, request: _Request) -> None:
        refusal = request.refusal
        assert refusal is not None
        rid = request.rid or fresh_id()
        token = log_request_id.set(rid.decode("ascii"))
        try:
            _log.info("refused an HTTP request with %d: %s", refusal.status, refusal.message,
                      extra={"status": refusal.status})
        finally:
            log_request_id.reset(token)
        self.server_state.total_requests += 1
        self._busy = False
        self._send(response_bytes(error_response(refusal.message, refusal.status),
                                  self.server_state.default_headers, rid, close=True))
        self._linger()

    def _linger(self) -> None:
        """Close after a refusal in a way that lets the client read it (RFC 9112 9.6).

        A client refused mid-upload is still sending; closing with its bytes unread would
        reset the connection, and a reset can destroy the refusal before the client reads
        it. So the sending side closes first (FIN after the refusal), what still arrives is
        read and dropped for ``limits.linger`` seconds at most, then the connection closes.
        """
        self._close(hard=False)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self.loop.call_later(self.limits.linger, self._close)

    def _answer_inference(self, request: _Request) -> None:
        # The exchange runs in a context of its own (its request id is a context variable),
        # driven by _step: up to its first wait right here (a model that answers inline
        # finishes now), then on from the done-callback of each future it waits for.
        self._step(self._exchange(request), contextvars.copy_context())

    def _step(self, exchange: Coroutine[Any, Any, None], context: contextvars.Context,
              _done: object = None) -> None:
        """Run ``exchange`` until it waits or ends: what an asyncio task does, minus a task.

        A task per request (creating it, registering it in asyncio's weak set of all tasks,
        scheduling its first step) cost about as much as decoding the request. The exchange
        awaits only plain futures (its batch, a thread's result), which need no task: the
        future's done-callback resumes the coroutine, and ``await`` reads the outcome.
        Only a lost connection cancels an exchange (its future: the queued work is dropped);
        a stopping server lets it finish (shutdown()).
        """
        self._pending = None
        try:
            waiting = context.run(exchange.send, None)
        except StopIteration:
            return
        except asyncio.CancelledError:  # the connection was lost (connection_lost)
            self._busy = False
            return
        except BaseException:  # _exchange answers every Exception itself; this is the rest
            _log.exception("request aborted")
            self._busy = False
            self._close()
            return
        if waiting is None:  # a bare yield (asyncio.sleep(0)): go on at the next loop turn
            self.loop.call_soon(self._step, exchange, context)
            return
        # The coroutine's await marked the future as waited on; a task clears that mark when
        # it takes the future over, as this does.
        waiting._asyncio_future_blocking = False
        waiting.add_done_callback(functools.partial(self._step, exchange, context))
        if not self._lost:
            self._pending = waiting

    async def _exchange(self, request: _Request) -> None:
        rid = request.rid or fresh_id()
        route = request.route
        head = request.head
        assert route is not None and head is not None
        call = rest_call(rid, "http11", self._peer, head, self._certificate)
        status, headers, payload = await answer_logged(
            self.ctx, call, route, request.params, request.body(), head.binary)
        close = self._closes_after(request)
        self._answered(answer_bytes(status, self.server_state.default_headers, headers,
                                    payload, rid, close=close), close)

    def _answer_app(self, request: _Request) -> None:
        gone = self._gone = asyncio.Event()
        task = self.loop.create_task(self._call_app(request, gone))
        self._pending = task
        tasks: set[asyncio.Task[None]] = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _call_app(self, request: _Request, gone: asyncio.Event) -> None:
        target = request.target
        assert target is not None
        answer = await call_app(self.app, self._scope(request.headers, target),
                                request.body(), gone)
        self._gone = None
        close = self._closes_after(request)
        default = self.server_state.default_headers
        if answer is None or unsafe_header(answer[1]):
            if answer is not None:
                _log.error("the app's answer to %s %s has an unsafe header; answered 500",
                           target.method, clip(target.path))
            rid = request.rid or fresh_id()
            self._answered(response_bytes(internal_error_response(rid.decode("ascii")),
                                          default, rid, close=True), True)
            return
        status, headers, body = answer
        if not any(name == b"content-length" for name, _ in headers) and status >= 200 and \
                status not in (204, 304):
            headers.append((b"content-length", b"%d" % len(body)))
        if target.method == _HEAD or status in (204, 304):
            body = b""
        self._answered(answer_bytes(status, default, headers, body, None, close=close), close)

    def _scope(self, headers: Headers, target: _Target) -> dict[str, Any]:
        """The ASGI scope of a request (what uvicorn would build)."""
        transport = self.transport
        assert transport is not None
        root = self.config.root_path
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": target.version,
            "server": _address(transport.get_extra_info("sockname")),
            "client": _address(transport.get_extra_info("peername")),
            "scheme": "https" if transport.get_extra_info("sslcontext") else "http",
            "method": target.method,
            "root_path": root,
            "path": root + target.path,
            "raw_path": root.encode("ascii") + target.raw_path,
            "query_string": target.query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        if self._tls is not None:
            scope["extensions"] = {"tls": dict(self._tls)}
        return scope

    def _closes_after(self, request: _Request) -> bool:
        return not request.keep_alive or self._closing

    def _answered(self, data: bytes, close: bool) -> None:
        """Write one whole answer and go on with the connection (or close it)."""
        self.server_state.total_requests += 1
        self._busy = False
        if self._lost:
            return
        self._send(data)
        self._last_active = self.loop.time()
        if close:
            self._close()
            return
        if not self._advancing:
            self._advance()

    def _send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self._lost and not transport.is_closing():
            transport.write(data)

    def _close(self, *, hard: bool = True) -> None:
        """Answer nothing more; close the transport too unless ``hard`` is False."""
        self._dead = True
        self._queue.clear()
        self._queued = 0
        self._receiving = None
        if hard and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ timeouts

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """The connection's one timer: is the client keeping the server waiting too long?

        It fires at the nearest deadline of the connection's state and re-arms for the
        next; events in between only move the times it looks at.
        """
        self._timer = None
        if self._lost or self.transport is None:
            return
        now = self.loop.time()
        limits = self.limits
        if self._write_paused:  # an answer waits for a client that does not read it
            deadline = self._write_stalled + limits.write_timeout
            if now >= deadline:
                _log.info("closed a connection whose client read no answer for %.0f s",
                          limits.write_timeout)
                self.transport.abort()
                return
        elif self._in_head and not self._dead:
            deadline = self._head_started + limits.head_timeout
            if now >= deadline:
                self._refuse(408, f"the request head did not arrive within "
                                  f"{limits.head_timeout:g} s")
                self._advance()
        elif self._receiving is not None and self._queue and self._queue[0] is \
                self._receiving and not self._read_paused and not self._dead:
            deadline = self._last_read + limits.body_timeout
            if now >= deadline:
                self._refuse(408, f"no byte of the request body arrived for "
                                  f"{limits.body_timeout:g} s")
                self._advance()
        elif self._busy or self._queue:
            deadline = now + self.keep_alive_seconds  # the server's turn: look again later
        else:
            deadline = self._last_active + self.keep_alive_seconds
            if now >= deadline:
                self.transport.close()
                return
        if self._lost:
            return
        # Never sleep past head_timeout: a head that starts meanwhile needs no re-arming.
        self._arm(max(now + 0.01, min(deadline, now + limits.head_timeout)))


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple | list) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None
