"""The transport ceiling: a no-op POST endpoint on ferry's REST stack (uvicorn + Starlette).

It reads the request body and answers a fixed small JSON document, doing no decoding and
no inference, so its requests/s is the most any model route on this stack can reach
(DESIGN.md section 3). Served like ferry's REST app: uvicorn, one worker, no access log.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ANSWER = b'{"predictions":[[0.0]]}'


async def noop(request: Request) -> Response:
    await request.body()
    return Response(_ANSWER, media_type="application/json")


app = Starlette(routes=[Route("/noop", noop, methods=["POST"])])
