"""RequestIdMiddleware: ids in and out, and a crash answered as JSON without a traceback."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ferry.protocols.rest.app import RequestIdMiddleware


async def _echo(request):
    return PlainTextResponse(request.scope["state"]["request_id"])


async def _crash(request):
    raise ZeroDivisionError("secret internals")


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/echo", _echo), Route("/crash", _crash)])
    app.add_middleware(RequestIdMiddleware)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://test")


async def test_the_id_reaches_the_handler_and_the_answer():
    async with _client() as client:
        response = await client.get("/echo", headers={"x-request-id": "abc-1"})
    assert response.text == "abc-1" and response.headers["x-request-id"] == "abc-1"


async def test_non_printable_ids_are_replaced():
    async with _client() as client:
        response = await client.get("/echo", headers={"x-request-id": "a\tb"})
    assert response.headers["x-request-id"] != "a\tb" and len(response.text) == 32


async def test_a_crash_is_a_json_500_naming_the_request_id_not_the_exception(caplog):
    async with _client() as client:
        response = await client.get("/crash", headers={"x-request-id": "boom-7"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-7"
    error = response.json()["error"]
    assert "boom-7" in error and "secret" not in error and "ZeroDivision" not in error
    assert "boom-7" in caplog.text and "ZeroDivisionError" in caplog.text
