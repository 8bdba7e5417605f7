"""``ferry pipeline create|eval|transforms``: pipelines and ensembles of stored versions.

``ferry import pipeline.toml --name NAME`` does what ``ferry pipeline create`` does (the file
is recognised by its ``kind = "pipeline"`` line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ferry.cli.app import app, state
from ferry.cli.console import err_console, out_console, print_json
from ferry.repository import ModelRef, Repository

__all__ = ["pipeline_app", "store_pipeline"]

pipeline_app = typer.Typer(
    name="pipeline",
    help="Pipelines and ensembles: steps that are stored models, transforms or custom code.",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")

EvalSet = Annotated[Path | None, typer.Option(
    "--eval", metavar="FILE.npz", help="An eval set (.npz: one array per pipeline input and "
    "'y', the true class ids): report the pipeline's accuracy beside each member's.",
)]


def store_pipeline(repo: Repository, file: Path, name: str, eval_set: Path | None) -> None:
    """Validate and store ``file`` as the next version of ``name``; print what was stored."""
    from ferry.pipelines import Graph, create_pipeline
    from ferry.pipelines.evaluation import evaluate_graph

    lines: list[str] = []

    def check(graph: Graph) -> list[str]:
        if eval_set is not None:
            lines.extend(evaluate_graph(repo, graph, eval_set).lines())
        return lines

    manifest, graph = create_pipeline(repo, file, name, check=check)
    signature = manifest.signature
    ins = ", ".join(f"{s.name} {s.describe()}" for s in signature.inputs)
    outs = ", ".join(f"{s.name} {s.describe()}" for s in signature.outputs)
    out_console.print(
        f"stored pipeline [bold]{manifest.name}:{manifest.version}[/] ({len(graph.steps)} "
        f"steps) into {repo.root / manifest.name / str(manifest.version)}", highlight=False)
    out_console.print(f"  inputs  {escape(ins)}\n  outputs {escape(outs)}", highlight=False)
    for line in lines:
        out_console.print(f"  {line}", highlight=False)


@pipeline_app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The pipeline file (TOML).",
                                         show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name in the repository.",
                                      show_default=False)],
    eval_set: EvalSet = None,
) -> None:
    """Validate a pipeline file against the repository and store it as a new version.

    Every step must exist, datatypes and shapes must fit along every edge, and there must
    be no cycle; nothing is written otherwise. Example:

      [bold]ferry pipeline create ensemble.toml --name digits-vote --eval digits.npz[/]
    """
    store_pipeline(state(ctx).repo, file, name, eval_set)


@pipeline_app.command("eval")
def eval_(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="PIPELINE",
                                         help="NAME or NAME:VERSION of a stored pipeline.")],
    eval_set: Annotated[Path, typer.Option(
        "--eval", metavar="FILE.npz", help="One array per pipeline input, and 'y'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Accuracy of a stored pipeline on an eval set, beside each member model's.

    Example: [bold]ferry pipeline eval digits-vote --eval digits.npz[/]
    """
    from ferry.errors import InputError
    from ferry.pipelines import KIND
    from ferry.pipelines.evaluation import evaluate, read_eval_set
    from ferry.pipelines.local import PipelineRuntime, load_pipeline

    repo = state(ctx).repo
    stored = repo.open(ModelRef.parse(model))
    if stored.manifest.kind != KIND:
        raise InputError(f"{stored.manifest.name}:{stored.manifest.version} is a model, not a "
                         "pipeline")
    inputs, y = read_eval_set(eval_set, stored.manifest.signature)
    with load_pipeline(repo, stored) as runtime:
        assert isinstance(runtime, PipelineRuntime)
        report = evaluate(runtime, inputs, y)
    if as_json:
        print_json({"rows": report.rows, "accuracy": report.accuracy,
                    "members": {sid: {"model": ref, "accuracy": acc}
                                for sid, (ref, acc) in report.members.items()}})
        return
    for line in report.lines():
        out_console.print(line, highlight=False)


@pipeline_app.command("transforms")
def transforms() -> None:
    """List the built-in transforms a step may name (transform = "...")."""
    from ferry.pipelines import transforms as module

    for name in sorted(module.TRANSFORMS):
        out_console.print(name, highlight=False)
    err_console.print("options and outputs: see the README, 'Pipelines and ensembles'",
                      highlight=False)
