"""The row formats: the seed's ``/predict`` and TF Serving's predict API <-> requests.

``/predict`` takes ``{"data": rows}`` (one input) or ``{"inputs": {"name": rows}}`` and
answers ``{"predictions": rows, "model", "version"}`` plus ``"labels"`` when the model's
manifest has class labels and its first output has one column per label. TF Serving takes
``{"instances": [row, ...]}`` (each row a value, or ``{"name": value}`` for several inputs)
or the columnar ``{"inputs": value | {"name": value}}``, and answers ``{"predictions": ...}``
or ``{"outputs": ...}`` in the same form. A single row sent without its batch nesting gets
the batch axis the model expects.

The datatype comes from the model's metadata, not the request (these formats carry none),
and values convert with V2 JSON's rules (:func:`ferry.codec.v2json.array_from_json`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.codec.request import infer_request
from ferry.codec.v2json import array_from_json
from ferry.errors import InputError, quote_name
from ferry.inference import InferRequest, InferResponse, ModelMetadata, RequestedOutput, Tensor
from ferry.signature import TensorSpec

__all__ = ["json_value", "predict_answer", "predict_request", "tfserving_answer",
           "tfserving_request"]


def predict_request(meta: ModelMetadata, model: str, version: str | None,
                    doc: dict[str, Any]) -> InferRequest:
    """A ``/predict`` body (``data`` or ``inputs``) as a request for the first output.

    Raises:
        InputError: both or neither of ``data`` and ``inputs``, ``data`` for a model with
            several inputs, an unknown input, or values that do not convert.
    """
    inputs = _named_tensors(meta, doc.get("data"), doc.get("inputs"), what="'data'")
    # The first output; a model with only one is asked for all of its outputs, the same
    # answer without naming it (and batched with V2 requests, which name none either).
    outputs = meta.outputs
    return infer_request(model, inputs, model_version=version,
                         outputs=None if len(outputs) == 1 else [RequestedOutput(outputs[0].name)])


def predict_answer(meta: ModelMetadata, model: str, response: InferResponse) -> dict[str, Any]:
    """The ``/predict`` answer: the first output's rows, and class labels where they fit."""
    scores = response.outputs[0].data
    answer: dict[str, Any] = {"predictions": json_value(scores), "model": model,
                              "version": response.model_version}
    labels = meta.labels
    if labels and scores.ndim == 2 and scores.shape[1] == len(labels):
        answer["labels"] = [labels[i] for i in scores.argmax(axis=1).tolist()]
    return answer


def tfserving_request(meta: ModelMetadata, model: str, version: str | None,
                      doc: dict[str, Any]) -> InferRequest:
    """A TF Serving predict body (``instances`` rows or columnar ``inputs``) as a request.

    Raises:
        InputError: rows that are not a non-empty list, rows mixing objects and values or
            naming different inputs, and what :func:`predict_request` refuses.
    """
    if "instances" in doc:
        inputs = _row_tensors(meta, doc["instances"])
    else:
        columns = doc["inputs"]
        named = isinstance(columns, dict)
        inputs = _named_tensors(meta, None if named else columns, columns if named else None,
                                what="'inputs'")
    return infer_request(model, inputs, model_version=version)


def tfserving_answer(response: InferResponse, *, rows: bool) -> dict[str, Any]:
    """TF Serving's answer: ``predictions`` for the row format, else columnar ``outputs``."""
    outputs = {t.name: t.data for t in response.outputs}
    if not rows:
        if len(outputs) == 1:
            return {"outputs": json_value(next(iter(outputs.values())))}
        return {"outputs": {name: json_value(a) for name, a in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": json_value(next(iter(outputs.values())))}
    batch = min(len(a) for a in outputs.values())
    return {"predictions": [{name: json_value(a[i]) for name, a in outputs.items()}
                            for i in range(batch)]}


def json_value(array: Any) -> Any:
    """A nested (natural-shape) JSON value of an output, for orjson.

    BYTES elements become strings; bytes that are not UTF-8 show U+FFFD where they break
    (these formats have no binary form; V2 infer returns such outputs losslessly).
    """
    array = np.asarray(array)
    if array.ndim == 0:
        item = array.item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    if array.dtype.kind == "O":
        return [json_value(a) for a in array]
    return np.ascontiguousarray(array)


def _named_tensors(meta: ModelMetadata, data: Any, inputs: Any, *, what: str) -> list[Tensor]:
    """Tensors in the model's datatypes from ``data`` (one input) or ``inputs`` (by name).

    Raises:
        InputError: both or neither given, several inputs but only ``data``, an unknown
            input, or data that does not convert to the input's datatype.
    """
    if data is not None and inputs is not None:
        raise InputError(f"give either {what} or 'inputs', not both")
    if data is not None:
        if len(meta.inputs) != 1:
            raise InputError(
                f"model {meta.name!r} has {len(meta.inputs)} inputs "
                f"({', '.join(repr(s.name) for s in meta.inputs)}); send "
                '{"inputs": {"name": [...], ...}} instead of ' + what)
        return [_tensor(meta.inputs[0], data)]
    if not isinstance(inputs, dict) or not inputs:
        raise InputError("'inputs' must be a JSON object of input name -> rows")
    tensors = []
    for name, value in inputs.items():
        found = next((s for s in meta.inputs if s.name == name), None)
        if found is None:
            raise InputError(
                f"unknown input {quote_name(name)}; the model's inputs are "
                f"{', '.join(repr(s.name) for s in meta.inputs)}")
        tensors.append(_tensor(found, value))
    return tensors


def _tensor(spec: TensorSpec, value: Any) -> Tensor:
    array = array_from_json(value, spec.name, spec.datatype)
    # One row without its batch nesting: add the batch axis the model expects.
    if spec.shape and spec.shape[0] == -1 and array.ndim == len(spec.shape) - 1:
        array = array[np.newaxis, ...]
    return Tensor(spec.name, spec.datatype, array.shape, array)


def _row_tensors(meta: ModelMetadata, instances: Any) -> list[Tensor]:
    if not isinstance(instances, list) or not instances:
        raise InputError('"instances" must be a non-empty list of rows')
    if not all(isinstance(row, dict) for row in instances):
        if any(isinstance(row, dict) for row in instances):
            raise InputError('"instances": mix of objects and plain values; use one form')
        return _named_tensors(meta, instances, None, what='"instances"')
    names = list(instances[0])
    for index, row in enumerate(instances):
        if sorted(row) != sorted(names):
            raise InputError(
                f'"instances"[{index}] has inputs {sorted(row)}, the first row has '
                f"{sorted(names)}; every row must name the same inputs")
    return _named_tensors(meta, None, {n: [row[n] for row in instances] for n in names},
                          what='"instances"')
