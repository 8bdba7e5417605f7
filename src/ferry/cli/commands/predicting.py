"""``ferry predict``: run a stored model on inputs from a file or stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ferry.arrays import parse_arrays
from ferry.cli.app import app, state
from ferry.cli.console import print_json
from ferry.errors import InputError
from ferry.repository import ModelRef
from ferry.runtimes import load_runtime
from ferry.signature import Signature


@app.command("predict")
def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME or NAME:VERSION (default: the latest).")],
    input: Annotated[str | None, typer.Option(
        "--input", "-i", help="Inputs: a .json, .npy or .npz file, or '-' for stdin "
        "(also read from stdin when omitted and piped).",
    )] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", "-o", help="Return only this output (repeatable).",
    )] = None,
    url: Annotated[str | None, typer.Option(
        "--url", "-u", envvar="FERRY_URL", help="Ask a running server instead of running the "
        "model here: http://HOST:PORT (REST) or grpc://HOST:PORT.",
    )] = None,
) -> None:
    """Run a stored model locally on inputs; print an Open Inference Protocol response.

    JSON inputs may be {"data": [[...]]}, {"inputs": {"name": [[...]]}}, a V2 request, or
    a bare list. Examples:

      [bold]ferry predict digits --input sample.json[/]
      [bold]echo '{"data": [[0, 0.3, ...]]}' | ferry predict digits:1[/]
      [bold]ferry predict digits --input sample.json --url http://127.0.0.1:8000[/]
    """
    if url is not None:
        print_json(predict_remote(url, ModelRef.parse(model), _read_input(input), output))
        return
    repo = state(ctx).repo
    stored = repo.open(ModelRef.parse(model))
    manifest = stored.manifest
    data, origin = _read_input(input)
    arrays = parse_arrays(data, manifest.signature, origin=origin)
    manifest.signature.check_inputs(arrays)
    if output:
        manifest.signature.check_output_names(output)
    if manifest.kind == "pipeline":  # its steps are other versions of the repository
        from ferry.pipelines.local import load_pipeline

        runtime = load_pipeline(repo, stored)
    else:
        runtime = load_runtime(manifest.runtime, stored.artifact_path, manifest.signature)
    with runtime:
        results = runtime.predict(arrays, output)
    response: dict[str, Any] = {
        "model_name": manifest.name,
        "model_version": str(manifest.version),
        "outputs": [
            {"name": name, "datatype": manifest.signature.output(name).datatype,
             "shape": list(arr.shape), "data": _jsonable(arr)}
            for name, arr in results.items()
        ],
    }
    first = next(iter(results.values()))
    if manifest.labels and first.ndim == 2 and first.shape[1] == len(manifest.labels):
        response["labels"] = [manifest.labels[i] for i in np.argmax(first, axis=1)]
    print_json(response)


def predict_remote(url: str, ref: ModelRef, source: tuple[bytes, str],
                   outputs: list[str] | None) -> dict[str, Any]:
    """Run the model on a server at ``url`` and return the V2 response as a dict.

    Raises:
        InputError: a URL of an unknown scheme, or inputs that do not fit the model.
        UnavailableError: nothing answers at ``url``.
    """
    version = None if ref.version is None else str(ref.version)
    client: Any
    if url.startswith(("http://", "https://")):
        from ferry.client_rest import RestClient

        client = RestClient(url)
    elif url.startswith("grpc://"):
        from ferry.client import GrpcClient

        client = GrpcClient(url.removeprefix("grpc://"))
    else:
        raise InputError(f"--url {url}: expected http://HOST:PORT or grpc://HOST:PORT")
    with client:
        meta = client.model_metadata(ref.name, version)
        signature = Signature(inputs=meta.inputs, outputs=meta.outputs)
        arrays = parse_arrays(source[0], signature, origin=source[1])
        response = client.infer(ref.name, arrays, version=version, outputs=outputs)
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.data.shape),
             "data": _jsonable(t.data)}
            for t in response.outputs
        ],
    }


def _read_input(source: str | None) -> tuple[bytes, str]:
    if source is None and sys.stdin.isatty():
        raise InputError("no inputs: give --input FILE, or pipe JSON into ferry predict")
    if source in (None, "-"):
        return sys.stdin.buffer.read(), "stdin"
    path = Path(source)
    if path.is_dir():
        raise InputError(f"--input {source}: is a directory; expected a .json, .npy or .npz file")
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise InputError(f"--input {source}: cannot read it ({exc.strerror})") from None


def _jsonable(arr: np.ndarray[Any, Any]) -> list[Any]:
    flat = arr.reshape(-1)
    if arr.dtype.kind == "O":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in flat]
    values: list[Any] = flat.tolist()
    return values
