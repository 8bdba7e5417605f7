"""A small REST client for ferry's servers (or any Open Inference Protocol V2 server).

It needs only ``httpx`` (``pip install 'ferry[client]'``), imported when a
:class:`RestClient` is made. Tensors travel with the binary tensor data extension (raw
little-endian bytes after the JSON), the fast path of the protocol; servers without it can be
used with ``binary=False``. Errors come back as ferry's own (:class:`~ferry.errors.InputError`
for a bad tensor, :class:`~ferry.errors.NotFoundError` for an unknown model, ...), with the
server's message.

Example, against ``make serve``::

    from ferry.client_rest import RestClient
    with RestClient("http://127.0.0.1:8000") as client:
        print(client.predict("digits", [[0.0] * 64]))
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from ferry.errors import (
    AuthenticationError,
    DeadlineExceededError,
    FerryError,
    InputError,
    InternalError,
    MissingDependencyError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from ferry.inference import InferResponse, ModelMetadata, ServerMetadata, Tensor
from ferry.signature import DATATYPES, TensorSpec, as_array, datatype_of

__all__ = ["RestClient"]

_HEADER = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")

#: HTTP status -> the ferry error a client raises for it.
_HTTP_ERRORS: dict[int, type[FerryError]] = {
    400: InputError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    413: PayloadTooLargeError, 415: UnsupportedMediaTypeError, 429: RateLimitedError,
    503: UnavailableError, 504: DeadlineExceededError,
}


class RestClient:
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
        self._httpx = httpx
        self.url = url.rstrip("/")
        self.binary = binary
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._inputs: dict[tuple[str, str | None], tuple[TensorSpec, ...]] = {}

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

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
        """Run one inference (V2 infer).

        Args:
            model: the model's name.
            inputs: input name -> array (numpy arrays keep their dtype; string or bytes
                arrays are sent as BYTES).
            version: a version, or None for the server's choice (the newest).
            outputs: the outputs wanted, or None for all.
            id: a request id, echoed in the response.
            parameters: request parameters.

        Returns:
            The response; ``outputs`` hold numpy arrays, BYTES ones as object arrays of bytes.

        Raises:
            InputError, NotFoundError, RateLimitedError, ...: what the server answered.
        """
        doc: dict[str, Any] = {"inputs": []}
        blobs: list[bytes] = []
        for name, value in inputs.items():
            tensor = _tensor(name, value)
            entry: dict[str, Any] = {"name": name, "datatype": tensor.datatype,
                                     "shape": list(tensor.shape)}
            if self.binary:
                blob = _encode(tensor.data, tensor.datatype)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = _plain(tensor.data)
            doc["inputs"].append(entry)
        if id is not None:
            doc["id"] = id
        params = dict(parameters or {})
        if self.binary:
            params.setdefault("binary_data_output", True)
        if params:
            doc["parameters"] = params
        if outputs:
            doc["outputs"] = [{"name": n} for n in outputs]
        header = json.dumps(doc).encode()
        headers = {"Content-Type": "application/octet-stream" if blobs else "application/json"}
        if blobs:
            headers[_HEADER] = str(len(header))
        response = self._send("POST", f"{_model_path(model, version)}/infer",
                              content=b"".join((header, *blobs)), headers=headers)
        return _decode_response(response.content, response.headers.get(_HEADER))

    def predict(self, model: str, data: Any, *, version: str | None = None) -> np.ndarray[Any, Any]:
        """Run a single-input model on ``data`` and return its first output.

        ``data`` is nested lists or an array of rows; the input's name and datatype come from
        the model's metadata (asked once).

        Raises:
            InputError: the model has several inputs, or ``data`` does not fit the input.
        """
        key = (model, version)
        if key not in self._inputs:
            self._inputs[key] = self.model_metadata(model, version).inputs
        specs = self._inputs[key]
        if len(specs) != 1:
            raise InputError(
                f"model {model!r} has {len(specs)} inputs "
                f"({', '.join(repr(s.name) for s in specs)}); use infer() with a dict")
        array = as_array(specs[0], data)
        return self.infer(model, {specs[0].name: array}, version=version).outputs[0].data


def _model_path(name: str, version: str | None) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "")


def _tensor(name: str, value: Any) -> Tensor:
    array = np.asarray(value)
    if array.dtype.kind in "USO":  # strings are sent as UTF-8 BYTES elements
        array = as_array(TensorSpec(name=name, datatype="BYTES", shape=array.shape), array)
    return Tensor(name, datatype_of(array.dtype), array.shape, array)


def _encode(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(v)) + v for v in array.reshape(-1))
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype].newbyteorder("<")).tobytes()


def _plain(array: np.ndarray[Any, Any]) -> list[Any]:
    flat = array.reshape(-1)
    if array.dtype.kind == "O":
        return [v.decode("utf-8") for v in flat]
    values: list[Any] = flat.tolist()
    return values


def _decode_response(body: bytes, header_length: str | None) -> InferResponse:
    size = int(header_length) if header_length else len(body)
    doc = json.loads(body[:size])
    offset = size
    outputs = []
    for out in doc["outputs"]:
        datatype, shape = out["datatype"], tuple(out["shape"])
        nbytes = (out.get("parameters") or {}).get("binary_data_size")
        if nbytes is not None:
            raw = body[offset:offset + nbytes]
            offset += nbytes
            data = _decode_raw(raw, datatype, shape)
        elif datatype == "BYTES":
            data = np.array([v.encode("utf-8") for v in out["data"]],
                            dtype=object).reshape(shape)
        else:
            data = np.asarray(out["data"], dtype=DATATYPES[datatype]).reshape(shape)
        outputs.append(Tensor(out["name"], datatype, shape, data))
    return InferResponse(doc["model_name"], doc.get("model_version", ""), outputs,
                         id=doc.get("id"), parameters=doc.get("parameters") or {})


def _decode_raw(raw: bytes, datatype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if datatype != "BYTES":
        dtype = DATATYPES[datatype].newbyteorder("<")
        return np.frombuffer(raw, dtype=dtype).astype(DATATYPES[datatype]).reshape(shape)
    items, offset = [], 0
    while offset < len(raw):
        (length,) = _LENGTH.unpack_from(raw, offset)
        items.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    return np.array(items, dtype=object).reshape(shape)


def _ferry_error(response: Any) -> FerryError:
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.text or f"HTTP {response.status_code}"
    kind = _HTTP_ERRORS.get(response.status_code, InternalError)
    if kind is RateLimitedError or kind is UnavailableError:
        retry = response.headers.get("retry-after", "")
        return kind(message, retry_after=float(retry) if retry.isdigit() else 1.0)
    return kind(message)
