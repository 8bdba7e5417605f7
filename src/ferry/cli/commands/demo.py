"""``ferry demo``: the seed tutorial's model, trained, imported and checked in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferry.cli.app import app, state
from ferry.cli.console import ConsoleProgress, out_console


@app.command("demo")
def demo(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Model name to import it as.")] = "digits",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 20,
    workdir: Annotated[Path, typer.Option(
        "--workdir", help="Where my_model.h5 is saved before the import.",
    )] = Path("build/demo"),
) -> None:
    """Train the seed network on scikit-learn's digits, import it, and score it.

    The network is the tutorial's Dense 64-64-10; it is saved as my_model.h5, imported,
    and its test accuracy printed under Keras and under ONNX Runtime.

    Needs the demo extra: pip install 'ferry[demo]'. Example:

      [bold]ferry --repo model-repository demo --epochs 20[/]
    """
    from ferry.demo import run_demo

    repo = state(ctx).repo
    result = run_demo(repo, name=name, workdir=workdir, epochs=epochs, progress=ConsoleProgress())
    m = result.manifest
    worst = max(m.parity.max_abs_diff.values(), default=0.0) if m.parity else float("nan")
    out_console.print(
        f"[bold]{m.name}:{m.version}[/] imported from {result.source} into "
        f"{repo.root / m.name / str(m.version)}\n"
        f"test accuracy on {result.test_rows} digits: Keras {result.keras_accuracy:.4f}, "
        f"ONNX Runtime {result.onnx_accuracy:.4f} (max |Δ| of logits {worst:.2g})",
        highlight=False,
    )
