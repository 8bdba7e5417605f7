"""A small REST client for ferry's servers (or any Open Inference Protocol V2 server).

It needs only ``httpx`` (``pip install 'ferry[client]'``), imported when a
:class:`RestClient` is made. Tensors travel with the binary tensor data extension (raw
little-endian bytes after the JSON), the fast path of the protocol; servers without it can be
used with ``binary=False``. Errors come back as ferry's own (:class:`~ferry.errors.InputError`
for a bad tensor, :class:`~ferry.errors.NotFoundError` for an unknown model, ...), with the
server's message.

Example, against ``make serve`` (``predict`` as with :class:`~ferry.client.GrpcClient`, or
``infer`` with named arrays)::

    import numpy as np
    from ferry.client_rest import RestClient
    with RestClient("http://127.0.0.1:8000") as client:
        print(client.predict("digits", [[0.0] * 64]))
        x = np.zeros((1, 64), np.float32)
        print(client.infer("digits", {"input_layer": x}).outputs[0].data)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ferry.client import Client, request_of, server_error
from ferry.codec.v2json import HEADER, decode_response, request_document, split_body
from ferry.errors import ErrorCode as Code
from ferry.errors import (
    FerryError,
    MissingDependencyError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from ferry.inference import InferResponse, ModelMetadata, ServerMetadata
from ferry.signature import TensorSpec

__all__ = ["RestClient"]

#: HTTP status -> the error code it stands for (:func:`ferry.client.server_error` picks the class).
_HTTP_CODES: dict[int, Code] = {
    400: Code.INVALID_ARGUMENT, 401: Code.UNAUTHENTICATED, 403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND, 429: Code.RESOURCE_EXHAUSTED, 503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}
#: The statuses only HTTP has, each with its own kind of input error.
_HTTP_ONLY: dict[int, type[FerryError]] = {
    413: PayloadTooLargeError, 415: UnsupportedMediaTypeError,
}


class RestClient(Client):
    """Blocking client for the V2 REST API, the repository extension and ``/predict``.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        timeout: seconds each call may take; None waits forever.
        binary: send inputs and ask for outputs as binary tensor data (else JSON).

    Raises:
        MissingDependencyError: httpx is not installed.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout: float | None = 30.0,
                 binary: bool = True) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("the REST client", "client") from None
        super().__init__()
        self._httpx = httpx
        self.url = url.rstrip("/")
        self.binary = binary
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, method: str, path: str, *, content: bytes | None = None,
              headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except self._httpx.TransportError as exc:
            raise UnavailableError(f"cannot reach the server at {self.url}: {exc}",
                                   hint="is `ferry serve` running, and on this port?") from None
        if response.status_code not in ok:
            raise _ferry_error(response)
        return response

    def _get_json(self, path: str) -> Any:
        return self._send("GET", path).json()

    # ------------------------------------------------------------ health, metadata

    def live(self) -> bool:
        """Whether the server is live."""
        return bool(self._send("GET", "/v2/health/live", ok=(200, 503)).status_code == 200)

    def ready(self) -> bool:
        """Whether the server is ready (every model it serves is)."""
        return bool(self._send("GET", "/v2/health/ready", ok=(200, 503)).status_code == 200)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether a model (version) is ready; False for an unknown one."""
        path = f"{_model_path(name, version)}/ready"
        return bool(self._send("GET", path, ok=(200, 404, 503)).status_code == 200)

    def server_metadata(self) -> ServerMetadata:
        """The server's name, version and extensions."""
        meta = self._get_json("/v2")
        return ServerMetadata(meta["name"], meta["version"], list(meta.get("extensions", [])))

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """A model's versions, platform and tensors.

        Raises:
            NotFoundError: no such model or version.
        """
        meta = self._get_json(_model_path(name, version))

        def specs(tensors: Any) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(name=t["name"], datatype=t["datatype"],
                                    shape=tuple(t["shape"])) for t in tensors)

        return ModelMetadata(meta["name"], list(meta.get("versions", [])),
                             meta.get("platform", ""), specs(meta["inputs"]),
                             specs(meta["outputs"]))

    # ------------------------------------------------------------ model repository

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """The repository's models with their versions and states."""
        body = json.dumps({"ready": ready_only}).encode()
        rows: list[dict[str, Any]] = self._send("POST", "/v2/repository/index",
                                                content=body).json()
        return rows

    def load_model(self, name: str) -> None:
        """Load (or reload) a model's newest versions."""
        self._send("POST", f"/v2/repository/models/{name}/load")

    def unload_model(self, name: str) -> None:
        """Unload a model."""
        self._send("POST", f"/v2/repository/models/{name}/unload")

    # ------------------------------------------------------------------- inference

    def infer(self, model: str, inputs: Mapping[str, Any], *, version: str | None = None,
              outputs: Sequence[str] | None = None, id: str | None = None,
              parameters: Mapping[str, Any] | None = None) -> InferResponse:
        """Run one inference (:meth:`Client.infer`) with V2 infer."""
        request = request_of(model, inputs, version, outputs, id, parameters)
        doc, blobs = request_document(request, binary=self.binary)
        header = json.dumps(doc, default=np.ndarray.tolist).encode()
        headers = {"Content-Type": "application/octet-stream" if blobs else "application/json"}
        if blobs:
            headers[HEADER] = str(len(header))
        response = self._send("POST", f"{_model_path(model, version)}/infer",
                              content=b"".join((header, *blobs)), headers=headers)
        head, binary = split_body(response.content, response.headers.get(HEADER))
        # The binary part is copied once into a bytearray, so that outputs are writable
        # arrays (views of the read-only body otherwise).
        return decode_response(json.loads(bytes(head)), memoryview(bytearray(binary)))


def _model_path(name: str, version: str | None) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "")


def _ferry_error(response: Any) -> FerryError:
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.text or f"HTTP {response.status_code}"
    status = response.status_code
    if status in _HTTP_ONLY:
        return _HTTP_ONLY[status](message)
    retry = response.headers.get("retry-after", "")
    return server_error(_HTTP_CODES.get(status), message,
                        float(retry) if retry.isdigit() else None)
