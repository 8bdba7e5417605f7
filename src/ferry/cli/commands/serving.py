"""``ferry serve``: serve a repository over the Open Inference Protocol (REST + gRPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferry.cli.app import app, state
from ferry.cli.console import err_console, out_console


@app.command("serve")
def serve(
    ctx: typer.Context,
    repository: Annotated[Path | None, typer.Argument(
        metavar="[REPO]", help="Model repository to serve (default: --repo).",
        show_default=False,
    )] = None,
    models: Annotated[str | None, typer.Option(
        "--models", "-m", help="Models to serve: 'digits,fraud:3' (name or name:version); "
        "every model of the repository when omitted.", show_default=False,
    )] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to listen on [default: 127.0.0.1; 0.0.0.0 for every one].",
        show_default=False,
    )] = None,
    http_port: Annotated[int | None, typer.Option(
        "--http-port", help="REST port [default: 8000; 0 picks a free one].",
        show_default=False,
    )] = None,
    grpc_port: Annotated[int | None, typer.Option(
        "--grpc-port", help="gRPC port [default: 8001; 0 picks a free one].",
        show_default=False,
    )] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", help="Server processes sharing the ports, to use more cores "
        "[default: 1].", show_default=False,
    )] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Settings file (TOML); FERRY_* variables and flags override it.",
        show_default=False,
    )] = None,
    watch: Annotated[bool | None, typer.Option(
        "--watch/--no-watch", help="Hot-swap a model when a new version appears in the "
        "repository [default: off].", show_default=False,
    )] = None,
    default_model: Annotated[str | None, typer.Option(
        "--default-model", help="The model POST /predict serves [default: the only one].",
        show_default=False,
    )] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="json or text [default: json].", show_default=False,
    )] = None,
) -> None:
    """Serve models over REST and gRPC until Ctrl-C (SIGTERM drains in-flight requests).

    Every model is loaded, verified and warmed before the ports open. REST speaks the
    Open Inference Protocol (V2, with binary tensors), the seed's POST /predict and TF
    Serving's :predict; gRPC speaks V2's GRPCInferenceService. SIGHUP reloads the models
    (hot swap without a failed request). Examples:

      [bold]ferry serve model-repository[/]
      [bold]ferry serve model-repository --models digits --http-port 9000 --workers 2[/]
      [bold]ferry serve --config ferry.toml --watch[/]
    """
    from ferry.server import Endpoints, run
    from ferry.settings import load_settings

    flags = {
        "repository": repository,
        "models": models,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "workers": workers,
        "watch": watch,
        "default_model": default_model,
        "log_format": log_format,
    }
    if repository is None and config is None and "FERRY_REPOSITORY" not in _environ():
        flags["repository"] = state(ctx).repo.root
    settings = load_settings(config, **flags)

    def ready(where: Endpoints) -> None:
        out_console.print(
            f"ferry is serving [bold]{', '.join(where.models)}[/] from {settings.repository}\n"
            f"  REST  {where.url}   (V2: /v2/models/NAME/infer, seed: /predict, "
            f"docs: {where.url}/docs, metrics: {where.url}/metrics)\n"
            f"  gRPC  {where.host}:{where.grpc_port}   (inference.GRPCInferenceService)\n"
            "Ctrl-C stops it after in-flight requests finish.", highlight=False,
        )

    code = run(settings, on_ready=ready)
    if code:
        err_console.print(f"a worker exited with code {code}")
        raise typer.Exit(code)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
