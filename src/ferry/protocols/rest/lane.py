"""The inference routes answered inside uvicorn's HTTP protocol, without the ASGI round trip.

Measured on one core with the seed network, an inference request through uvicorn and the
:class:`~ferry.protocols.rest.hot.HotRoutes` middleware spends most of its time in the
machinery between the socket and the model: an ASGI scope, a task per request, the
``receive``/``send`` message dictionaries, the middleware chain, header validation on every
answer. :class:`LaneProtocol` is uvicorn's own httptools protocol (parsing, keep-alive,
pipelining, flow control, timeouts and shutdown stay uvicorn's) with one hook changed: when
a request's headers name an inference route and the request is plain (see
:func:`~ferry.protocols.rest.hot.plain_length`; bodies up to uvicorn's read buffer, no
``Expect: 100-continue``), its body is collected by the parser and answered by
:func:`~ferry.protocols.rest.hot.answer` — the very function the middleware and the routes
use — and the reply is written to the transport in one piece. Every other request takes
uvicorn's normal path into the Starlette app.

When the model answers without waiting (small models run inline, see
``ModelConfig.inline_below_ms``), the whole exchange happens inside the parser's callback:
no task is created. Otherwise the exchange becomes a task, as uvicorn would have made.

uvicorn is pinned (``pyproject.toml``): this class relies on its ``RequestResponseCycle``
attributes, and ``tests/integration/serving/test_lane.py`` checks the behaviour that matters
(pipelining, keep-alive, ``Connection: close``, large bodies, errors) over real sockets.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from ferry.protocols.rest.exchange import RestContext, request_id_of
from ferry.protocols.rest.hot import (
    Headers,
    Route,
    answer_logged,
    binary_header,
    match,
    plain_length,
)

__all__ = ["LaneProtocol", "answer_bytes", "lane_protocol"]


_REQUEST_ID = b"x-request-id"



def lane_protocol(ctx: RestContext) -> type[HttpToolsProtocol]:
    """The httptools protocol class of uvicorn, with the inference lane over ``ctx``.

    Given to ``uvicorn.Config(http=...)``, which instantiates it per connection.
    """
    return type("LaneProtocol", (LaneProtocol,), {"ctx": ctx})


class LaneProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol; inference requests skip ASGI (see the module docstring)."""

    ctx: RestContext

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn calls this when a request's headers are in (or when a pipelined request's
        # turn comes): the one point where it decides how the request is answered.
        lane = self._lane(cycle) if app is self.app else None
        if lane is None:
            super()._start_asgi_task(cycle, app)
            return
        cycle.ferry_lane = lane  # type: ignore[attr-defined]
        if not cycle.more_body:
            self._run_lane(cycle)

    def on_message_complete(self) -> None:
        """The body is in: answer a lane request that was waiting for it."""
        super().on_message_complete()
        cycle = self.cycle
        if (cycle is not None and getattr(cycle, "ferry_lane", None) is not None
                and not cycle.response_complete):
            self._run_lane(cycle)

    def _lane(self, cycle: RequestResponseCycle) -> tuple[Route, dict[str, str]] | None:
        """The inference route of a plain request on the lane, else None."""
        scope = cycle.scope
        if scope["method"] != "POST" or cycle.waiting_for_100_continue:
            return None
        found = match(scope["path"])
        if found is None:
            return None
        # Bodies past uvicorn's read buffer make it pause reading until the app asks for
        # more; they take the ASGI path, whose receive() resumes it.
        limit = min(self.ctx.max_body_bytes, HIGH_WATER_LIMIT)
        if plain_length(scope["headers"], binary=found[0] == "infer", limit=limit) is None:
            return None
        return found

    def _run_lane(self, cycle: RequestResponseCycle) -> None:
        route, params = cycle.ferry_lane  # type: ignore[attr-defined]
        cycle.ferry_lane = None  # type: ignore[attr-defined]
        exchange = self._exchange(cycle, route, params)
        # Run it here, up to its first wait, in a context of its own (as a task would):
        # a model that answers inline finishes now, with no task created.
        context = contextvars.copy_context()
        try:
            waiting = context.run(exchange.send, None)
        except StopIteration:
            return
        # It waits (for a batch, a thread): the rest runs as a task in the same context.
        task = self.loop.create_task(_resume(exchange, waiting), context=context)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _exchange(self, cycle: RequestResponseCycle, route: Route,
                        params: dict[str, str]) -> None:
        headers = cycle.scope["headers"]
        rid = request_id_of(headers)
        status, out, payload = await answer_logged(self.ctx, route, params, bytes(cycle.body),
                                                   binary_header(headers), rid)
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        _write(cycle, status, out, payload, rid)


def _write(cycle: RequestResponseCycle, status: int, headers: Headers, payload: bytes,
           rid: bytes) -> None:
    """Write the whole answer at once, then let uvicorn go on with the connection."""
    if cycle.disconnected or cycle.response_complete:
        return
    cycle.response_started = True
    cycle.response_complete = True
    cycle.transport.write(answer_bytes(status, cycle.default_headers, headers, payload, rid,
                                       close=not cycle.keep_alive))
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


def answer_bytes(status: int, default_headers: Headers, headers: Headers, payload: bytes,
                 rid: bytes, *, close: bool) -> bytes:
    """A whole HTTP/1.1 answer as one buffer, for a single write.

    Status line, uvicorn's default headers (date, server), the answer's own, the request id,
    ``connection: close`` when the connection closes after it, then the body.
    """
    parts = [STATUS_LINE[status]]
    for name, value in (*default_headers, *headers):
        parts += (name, b": ", value, b"\r\n")
    parts += (_REQUEST_ID, b": ", rid, b"\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", payload)
    return b"".join(parts)


async def _resume(exchange: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a coroutine that already ran up to its first wait (``waiting``) to its end.

    What a task does from the start, picked up midway: each time the coroutine waits on a
    future, wait for that future here (its outcome is the coroutine's to read), then resume
    the coroutine.
    """
    while True:
        try:
            if waiting is None:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            else:
                # The coroutine's own await marked the future as waited on; a task clears
                # that mark when it takes the future over, as this one does here.
                waiting._asyncio_future_blocking = False
                await waiting
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not waiting.cancelled() or (task is not None and task.cancelling()):
                exchange.close()  # this task is cancelled (a forced shutdown): stop there
                raise
        except Exception:  # the coroutine reads the outcome when resumed
            pass
        try:
            waiting = exchange.send(None)
        except StopIteration:
            return
