"""``ferry export``: one version as a self-contained bundle for a device (ferry.bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ferry.bundle import export_bundle
from ferry.cli.app import app, state
from ferry.cli.console import ConsoleProgress, out_console, print_json

__all__ = ["export"]


@app.command("export")
def export(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME or NAME:VERSION (default: the latest).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="The bundle directory to write (new, or empty).",
        show_default=False,
    )],
    ort: Annotated[bool, typer.Option(
        "--ort", help="Convert the ONNX artifact to ONNX Runtime's .ort format, with the "
        "reduced-operator config a minimal ONNX Runtime build is compiled with.",
    )] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a verified version, its manifest and hashes to a directory for a device.

    The bundle is a model repository holding that version (and, for a pipeline, the
    versions it runs): on the device, with only the core install (pip install ferry),
    [bold]ferry.load(DIR)[/] checks every file's sha256 and runs it.

    Example: [bold]ferry export digits:1 -o digits-bundle --ort[/]
    """
    repo = state(ctx).repo
    step = "verifying, converting to the ORT format and writing" if ort else \
        "verifying and writing"
    with ConsoleProgress().step(f"{step} {model} into {out}"):
        bundle = export_bundle(repo, model, out, ort=ort)
    manifest = bundle.manifest
    if as_json:
        print_json({"model": manifest.name, "version": manifest.version,
                    "path": str(bundle.root), "artifact": manifest.artifact,
                    "files": bundle.files, "signed": bundle.signed,
                    "members": bundle.members})
        return
    out_console.print(
        f"exported {manifest.name}:{manifest.version} to {escape(str(bundle.root))} "
        f"({', '.join(bundle.files)})", highlight=False)
    if bundle.members:
        out_console.print(f"with the versions it runs: {', '.join(bundle.members)}",
                          highlight=False)
    out_console.print(
        f"load it with: ferry.load({str(bundle.root)!r})", markup=False, highlight=False)
