"""``ferry import`` and ``ferry formats``: bring a model file into the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ferry.cli.app import app, state
from ferry.cli.console import ConsoleProgress, err_console, out_console, print_json
from ferry.errors import InputError
from ferry.formats import ImportOptions, import_model, iter_importers
from ferry.formats.detect import is_pipeline_file
from ferry.repository import Manifest, Repository


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(
        metavar="FILE", help="The model as saved: my_model.h5, model.keras, model.onnx, ...",
        show_default=False,
    )],
    name: Annotated[str, typer.Option(
        "--name", "-n", help="Model name in the repository (letters, digits, _ . -).",
        show_default=False,
    )],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="Source format; detected from the file's bytes when omitted.",
    )] = None,
    samples: Annotated[Path | None, typer.Option(
        "--samples", help="Inputs for the parity check (.npy, .npz or .json); generated "
        "from the signature when omitted.",
    )] = None,
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", min=0.0, help="Largest accepted max |Δ| between source and artifact "
        "(default: the format's, e.g. 1e-4 for Keras).",
    )] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Class labels: 'cat,dog,...' or @FILE with one label per line.",
    )] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset for conversion.")] = None,
    native: Annotated[bool, typer.Option(
        "--native", help="Serve with the source framework's own runtime instead of converting "
        "to ONNX (formats with a native runtime: see 'ferry formats').",
    )] = False,
    trust_sha256: Annotated[str | None, typer.Option(
        "--trust-sha256", metavar="HEX", help="Load a pickle/joblib file (which runs code "
        "from it) only if its sha256 is HEX. Prefer skops files, which need no trust.",
    )] = None,
    eval_set: Annotated[Path | None, typer.Option(
        "--eval", metavar="FILE.npz", help="Pipelines: report the pipeline's accuracy on "
        "this eval set (one array per input, and 'y') beside each member's.",
    )] = None,
    repository: Annotated[str | None, typer.Option(
        "--repository", metavar="DIR|s3://BUCKET/PREFIX", help="The repository to import "
        "into, instead of --repo: a directory, or object storage (ferry[s3]; credentials "
        "from AWS_* variables, AWS_ENDPOINT_URL for S3-compatible servers).",
        show_default=False,
    )] = None,
) -> None:
    """Import a model file as a new version: convert to ONNX, prove parity, store.

    Nothing is written unless every check passes. Examples:

      [bold]ferry import my_model.h5 --name digits[/]
      [bold]ferry import model.onnx --name resnet --samples inputs.npz[/]
      [bold]ferry import model.skops --name iris[/]
      [bold]ferry import model.onnx --name resnet --repository s3://bucket/models[/]
      [bold]ferry import pipeline.toml --name digits-top3[/]  (a pipeline: see ferry pipeline)
    """
    repo = state(ctx).repo if repository is None else Repository(repository)
    if format in (None, "pipeline") and is_pipeline_file(file):
        from ferry.cli.commands.pipelines import store_pipeline

        store_pipeline(repo, file, name, eval_set)
        return
    if eval_set is not None:
        raise InputError("--eval applies to pipelines (a TOML file with kind = \"pipeline\"); "
                         f"{file.name} is not one")
    options = ImportOptions(samples=samples, tolerance=tolerance, labels=_labels(labels),
                            opset=opset, native=native, trust_sha256=trust_sha256)
    manifest = import_model(repo, file, name, format=format, options=options,
                            progress=ConsoleProgress())
    _summary(manifest, repo.location)


def _labels(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"--labels: cannot read {path} ({exc.strerror})") from None
        return [line.strip() for line in lines if line.strip()]
    return [part.strip() for part in text.split(",")]


def _summary(m: Manifest, root: str) -> None:
    parity = m.parity
    figures = ""
    if parity:
        worst = max(parity.max_abs_diff.values(), default=0.0)
        figures = (f"; parity max |Δ| {worst:.2g} on {parity.samples} samples "
                   f"(tolerance {parity.tolerance:g})")
    out_console.print(
        f"imported [bold]{m.name}:{m.version}[/] ({m.format} -> {m.runtime}) into "
        f"{root}/{m.name}/{m.version}{figures}", highlight=False,
    )


@app.command("formats")
def formats(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the model formats ferry imports, with their converters and install state."""
    rows = [
        {"format": i.format, "reads": i.description, "converter": i.converter,
         "native_runtime": i.native_runtime, "extra": i.extra, "installed": i.available()}
        for i in iter_importers()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("format", "reads", "converter", "native runtime", "installed")
    for row in rows:
        extra = f"pip install 'ferry[{row['extra']}]'" if row["extra"] else "core"
        table.add_row(str(row["format"]), str(row["reads"]), str(row["converter"]),
                      str(row["native_runtime"] or "-"),
                      "yes" if row["installed"] else f"no: {extra}")
    out_console.print(table)
    err_console.print("the format is detected from the file; --format overrides")
