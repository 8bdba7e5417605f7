"""``ferry optimize`` and ``ferry compare``: smaller, faster versions, measured side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ferry.cli.app import app, state
from ferry.cli.console import ConsoleProgress, err_console, out_console, print_json
from ferry.errors import ParityError
from ferry.optimize import (
    OptimizeOptions,
    Report,
    compare_versions,
    optimize_version,
    quality_lines,
    report_rows,
)
from ferry.repository import ModelRef

_EVAL_HELP = ("Rows to judge quality on (.npz/.npy/.json as --samples reads them); an .npz "
              "with 'x' and 'y' (or the named inputs and 'labels') also gives accuracy. "
              "Default: 64 rows generated from the signature.")


@app.command("optimize")
def optimize(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="NAME[:VERSION]", help="The version to optimize (default: the latest).",
        show_default=False)],
    fuse: Annotated[bool, typer.Option(
        "--fuse", help="Save ONNX Runtime's offline graph optimizations (fusion, constant "
        "folding).")] = False,
    quantize: Annotated[str | None, typer.Option(
        "--quantize", metavar="dynamic|static|fp16",
        help="INT8 weights (dynamic), INT8 QDQ with --calibration (static), or float16 with "
        "float32 inputs and outputs (fp16).")] = None,
    prune: Annotated[float | None, typer.Option(
        "--prune", metavar="FRACTION", help="Zero this share of each weight tensor (or, with "
        "--structured, drop this share of hidden units).")] = None,
    structured: Annotated[bool, typer.Option(
        "--structured", help="Prune whole hidden units of dense-layer chains, so the model "
        "computes less.")] = False,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", metavar="FILE", help="Sample inputs for --quantize static.")] = None,
    eval: Annotated[Path | None, typer.Option("--eval", metavar="FILE", help=_EVAL_HELP)] = None,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", metavar="POINTS", help="Refuse a version that loses more than this many "
        "points of accuracy (top-1 agreement without labels).")] = 1.0,
    force: Annotated[bool, typer.Option(
        "--force", help="Publish even past --max-drop (the manifest records it).")] = False,
    threads: Annotated[int, typer.Option(
        "--threads", min=0, help="Intra-op threads for the measurements (0: one per usable "
        "CPU).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest's optimization "
                                          "record as JSON.")] = False,
) -> None:
    """Optimize a version into a new one: prune, then quantize, then fuse.

    The new version is measured beside its parent (size, FLOPs, latency, quality) and is
    written only if it lost at most --max-drop points. Examples:

      [bold]ferry optimize digits --quantize dynamic --eval digits_test.npz[/]
      [bold]ferry optimize digits:1 --quantize static --calibration calib.npz --fuse[/]
      [bold]ferry optimize big --prune 0.5 --structured --eval test.npz --max-drop 2[/]
    """
    repo = state(ctx).repo
    options = OptimizeOptions(fuse=fuse, quantize=quantize, prune=prune, structured=structured,
                              calibration=calibration, eval=eval, max_drop=max_drop,
                              force=force, threads=threads)
    ref = ModelRef.parse(model)
    measured: list[Report] = []
    try:
        result = optimize_version(repo, ref, options, progress=ConsoleProgress(),
                                  on_report=measured.append)
    except ParityError:  # refused by the guard: show the figures, then the refusal
        if measured and not as_json:
            _print_report(measured[0], str(ref), "refused")
        raise
    m = result.manifest
    if as_json:
        record = m.optimization.model_dump(mode="json") if m.optimization else {}
        print_json({"name": m.name, "version": m.version, "parent": m.parent, **record})
    else:
        _print_report(result.report, f"{m.name}:{m.parent}", f"{m.name}:{m.version}")
        for step in m.optimization.steps if m.optimization else []:
            out_console.print(f"  {step.name:<9} {step.summary}", highlight=False)
        out_console.print(f"wrote [bold]{m.name}:{m.version}[/] (parent {m.name}:{m.parent}) "
                          f"into {repo.root / m.name / str(m.version)}", highlight=False)
    if result.forced:
        q = result.report.quality
        err_console.print(
            f"[yellow]published with --force[/]: it drops {q.drop:.2f} points of {q.measure}, "
            f"more than --max-drop {max_drop:g}", highlight=False)


@app.command("compare")
def compare(
    ctx: typer.Context,
    first: Annotated[str, typer.Argument(metavar="NAME:V1", help="The reference version.")],
    second: Annotated[str, typer.Argument(metavar="NAME:V2", help="The version judged.")],
    eval: Annotated[Path | None, typer.Option("--eval", metavar="FILE", help=_EVAL_HELP)] = None,
    threads: Annotated[int, typer.Option(
        "--threads", min=0, help="Intra-op threads for both (0: one per usable CPU).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure two versions side by side: size, FLOPs, latency, quality of V2 against V1.

    Example: [bold]ferry compare digits:1 digits:2 --eval digits_test.npz[/]
    """
    repo = state(ctx).repo
    report = compare_versions(repo, ModelRef.parse(first), ModelRef.parse(second), eval=eval,
                              threads=threads, progress=ConsoleProgress())
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    _print_report(report, first, second)


def _print_report(report: Report, before: str, after: str) -> None:
    table = Table("", before, after, f"{after} / {before}", box=None, pad_edge=False)
    for row in report_rows(report):
        table.add_row(*row)
    out_console.print(table)
    for line in quality_lines(report):
        out_console.print(f"  {line}", highlight=False)
    threads = report.threads or "one per usable CPU"
    out_console.print(f"  measured in one process, intra-op threads: {threads}", highlight=False)

