"""V2 JSON answers as bytes: :mod:`ferry.codec.v2json`'s documents written with orjson.

The codec builds the document and the binary data that follows it; writing JSON is the one
part left to the server, because orjson (fast, numpy arrays written natively) is a server
extra that the REST client, which shares the codec, must not need.
"""

from __future__ import annotations

import orjson

from ferry.codec.v2json import response_document
from ferry.inference import InferRequest, InferResponse

__all__ = ["encode_response"]


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """Encode an engine response as a V2 JSON body, with binary outputs where asked.

    Returns:
        The body, and the JSON header's length when binary data follows it (else None).
    """
    doc, blobs = response_document(response, request)
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join((header, *blobs)), len(header)
