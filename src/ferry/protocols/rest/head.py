"""The one reader of REST request heads: what every door needs to know of a request.

Every REST door reads a request's header fields here, in one pass, with the same rules:
ferry's HTTP/1.1 protocol (http11.py) on the fields llhttp hands it, the ASGI middleware
(:class:`~ferry.protocols.rest.app.RequestIdMiddleware` and
:class:`~ferry.protocols.rest.hot.HotRoutes`) on the scope's fields under any ASGI server.
So the request id, the credentials, the binary-extension header and the rule that decides
whether the inference fast path may take a body are one code, and the doors cannot drift.

Field names arrive lower-cased (llhttp's fields are lowered by http11.py; ASGI servers
lower them by the spec).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BINARY_HEADER", "JSON", "OCTETS", "OTHER", "TIMEOUT_HEADER", "Head", "media",
           "read_head", "usable_request_id"]

#: The V2 binary tensor data extension's header (lower case, as fields arrive).
BINARY_HEADER = b"inference-header-content-length"
#: The client's deadline for its request, in milliseconds from its arrival (ferry's own:
#: REST has no standard one; gRPC has its deadline, the V2 protocol a ``timeout`` parameter).
TIMEOUT_HEADER = b"x-ferry-timeout-ms"
_JSON = b"application/json"
_JSON_SUFFIX = b"+json"
_OCTETS = b"application/octet-stream"


#: What a ``Content-Type`` names, for the routes that read a JSON body (see :func:`media`).
JSON, OCTETS, OTHER = 0, 1, 2


class Head:
    """What a request's header fields say, as read by :func:`read_head`.

    Attributes:
        hosts: how many ``Host`` fields (HTTP/1.1 needs exactly one).
        length: the ``Content-Length`` (None without one, or when it is not a number:
            then the body is not plain, and the route reads and refuses it).
        plain: a body the fast path may read as it is: a plain ``Content-Length`` and no
            ``Content-Encoding`` or ``Transfer-Encoding`` (see :meth:`fast` for the media
            type).
        media: :data:`JSON` (a JSON type, or no ``Content-Type``: tritonclient sends none),
            :data:`OCTETS` or :data:`OTHER`.
        request_id: the client's ``X-Request-ID`` when usable (:func:`usable_request_id`).
        binary: the ``Inference-Header-Content-Length`` value (V2 binary extension).
        authorization: the ``Authorization`` value, for the policies; never logged.
        timeout: the ``X-Ferry-Timeout-Ms`` value as sent (read by ``rest_call``).
        expect_continue: ``Expect: 100-continue``.
    """

    __slots__ = ("authorization", "binary", "expect_continue", "hosts", "length", "media",
                 "plain", "request_id", "timeout")

    def __init__(self) -> None:
        self.hosts = 0
        self.length: int | None = None
        self.plain = True
        self.media = JSON
        self.request_id: bytes | None = None
        self.binary: str | None = None
        self.authorization: bytes | None = None
        self.timeout: bytes | None = None
        self.expect_continue = False

    def fast(self, *, binary: bool) -> bool:
        """The inference fast path may answer this request (``binary``: a V2 infer route).

        Anything else goes to the route, which reads the body the slow way (chunked,
        compressed) or refuses it (415 for a media type, 413 for a size) with the same
        answer on every door.
        """
        return self.plain and (self.media == JSON or (binary and self.media == OCTETS))


def read_head(fields: Iterable[tuple[bytes, bytes]]) -> Head:  # noqa: C901 (one flat pass)
    """Read a request's header ``fields`` once (one flat dispatch: runs on every request)."""
    head = Head()
    for name, value in fields:
        if name == b"host":
            head.hosts += 1
        elif name == b"content-length":
            if value.isdigit():  # ASCII digits only (bytes.isdigit)
                head.length = int(value)
            else:
                head.plain = False
        elif name == b"content-type":
            head.media = media(value)
        elif name == b"x-request-id":
            head.request_id = usable_request_id(value)
        elif name == BINARY_HEADER:
            head.binary = value.decode("latin-1")
        elif name == b"authorization":
            head.authorization = value
        elif name == TIMEOUT_HEADER:
            head.timeout = value
        elif name == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        elif name == b"content-encoding" or name == b"transfer-encoding":
            head.plain = False
    if not head.length:
        head.plain = False
    return head


def media(content_type: bytes) -> int:
    """The Content-Type rule of every route that reads a JSON body, on every door.

    JSON (``application/json`` or a ``+json`` type) is read everywhere,
    ``application/octet-stream`` (V2 binary tensor data) by the V2 infer routes; anything
    else is refused with 415 by the route.
    """
    # Clients send one or two values over and over: each is read once. Bounded (clients
    # choose the values): short values only, and at most _MEDIA_MAX of them, then no more.
    found = _MEDIA.get(content_type)
    if found is None:
        kind = content_type.split(b";", 1)[0].strip().lower()
        if kind == _JSON or kind.endswith(_JSON_SUFFIX):
            found = JSON
        else:
            found = OCTETS if kind == _OCTETS else OTHER
        if len(_MEDIA) < _MEDIA_MAX and len(content_type) <= _MEDIA_KEY:
            _MEDIA[bytes(content_type)] = found
    return found


#: :func:`media`'s memo: values of at most _MEDIA_KEY bytes, at most _MEDIA_MAX of them.
_MEDIA: dict[bytes, int] = {}
_MEDIA_MAX = 64
_MEDIA_KEY = 100


def usable_request_id(value: bytes) -> bytes | None:
    """``value`` as a request id if it is short printable ASCII (1-128 characters), else None."""
    if 0 < len(value) <= 128 and value.isascii() and value.decode().isprintable():
        return bytes(value)
    return None
