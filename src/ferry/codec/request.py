"""The one place an :class:`~ferry.inference.InferRequest` is built.

Every door unpacks its own framing (V2 JSON, protobuf, the row formats, a client's arrays)
into tensors and then calls :func:`infer_request`, so the checks that do not depend on the
framing (a model name, each input once) are made once and say the same thing everywhere.
:func:`named_tensors` is the clients' way from a user's arrays to tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ferry.errors import InputError, quote_name
from ferry.inference import InferRequest, RequestedOutput, Tensor
from ferry.signature import TensorSpec, as_array, datatype_of

__all__ = ["infer_request", "named_tensors"]


def infer_request(model_name: str, inputs: list[Tensor], *, model_version: str | None = None,
                  id: str | None = None, outputs: list[RequestedOutput] | None = None,
                  parameters: dict[str, Any] | None = None) -> InferRequest:
    """Build a request from decoded tensors, refusing what no framing may carry.

    Args:
        model_name: the model to run.
        inputs: the decoded input tensors, in the order they came.
        model_version: a version, or None for the newest.
        id: the client's request id, echoed in the response.
        outputs: the outputs asked for (with their parameters), or None for all.
        parameters: the request's parameters.

    Raises:
        InputError: no model name, or an input name given twice.
    """
    if not model_name:
        raise InputError("model_name is empty; name the model to run")
    if len(inputs) > 1:  # one input (the common case) cannot repeat itself
        seen: set[str] = set()
        for tensor in inputs:
            if tensor.name in seen:
                raise InputError(
                    f"input {quote_name(tensor.name)} appears more than once in the request")
            seen.add(tensor.name)
    return InferRequest(model_name=model_name, inputs=inputs, model_version=model_version,
                        id=id, outputs=outputs,
                        parameters={} if parameters is None else parameters)


def _tensor_of(name: str, value: Any) -> Tensor:
    # numpy dtypes are kept; strings are sent as UTF-8 BYTES elements.
    array = np.asarray(value)
    if array.dtype.kind in "USO":
        array = as_array(TensorSpec(name=name, datatype="BYTES", shape=array.shape), array)
    return Tensor(name, datatype_of(array.dtype), array.shape, array)


def named_tensors(values: Mapping[str, Any]) -> list[Tensor]:
    """A request tensor for each of a client's ``{name: value}`` inputs, in their order.

    numpy arrays keep their dtype; string arrays are sent as UTF-8 BYTES.

    Raises:
        InputError: a dtype with no V2 datatype (complex, datetime...), or a string array
            with non-string elements.
    """
    return [_tensor_of(name, value) for name, value in values.items()]
