"""``ferry serve``: serve a repository over the Open Inference Protocol (REST + gRPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ferry.cli.app import app, state
from ferry.cli.console import out_console


@app.command("serve")
def serve(
    ctx: typer.Context,
    repository: Annotated[Path | None, typer.Argument(
        metavar="REPO", help="Model repository to serve (default: --repo, or FERRY_REPOSITORY).",
        show_default=False,
    )] = None,
    models: Annotated[str | None, typer.Option(
        "--models", "-m", help="Models to serve: 'digits,fraud:3' (name or name:version); "
        "every model of the repository when omitted.", show_default=False,
    )] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to listen on (default: 127.0.0.1; 0.0.0.0 listens on every "
        "address).",
        show_default=False,
    )] = None,
    http_port: Annotated[int | None, typer.Option(
        "--http-port", help="REST port (default: 8000; 0 picks a free one).",
        show_default=False,
    )] = None,
    grpc_port: Annotated[int | None, typer.Option(
        "--grpc-port", help="gRPC port (default: 8001; 0 picks a free one).",
        show_default=False,
    )] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", help="Server processes sharing the ports (SO_REUSEPORT), to use "
        "more cores (default: 1). One that dies is restarted; one that keeps dying at start "
        "stops the server (exit code 1).",
        show_default=False,
    )] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Settings file (TOML); FERRY_* variables and flags override it.",
        show_default=False,
    )] = None,
    watch: Annotated[bool | None, typer.Option(
        "--watch/--no-watch", help="Poll the repository and hot-swap a model when a new "
        "version directory appears (default: off).", show_default=False,
    )] = None,
    default_model: Annotated[str | None, typer.Option(
        "--default-model", help="The model POST /predict serves (default: the only one).",
        show_default=False,
    )] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="Log lines as 'json' (one object a line, with request ids) or "
        "'text' (default: json).", show_default=False,
    )] = None,
    api_keys_file: Annotated[Path | None, typer.Option(
        "--api-keys-file", help="Require an API key (or JWT) on every call: the keys file "
        "`ferry keys add` writes (\\[security] api_keys_file; default: auth off).",
        show_default=False,
    )] = None,
    audit_log: Annotated[str | None, typer.Option(
        "--audit-log", help="Write admin actions, key changes and refused callers to this "
        "file as JSON lines, '-' for stderr (\\[security] audit_log; default: none).",
        show_default=False,
    )] = None,
    trusted_keys: Annotated[Path | None, typer.Option(
        "--trusted-keys", help="Serve only versions signed (ferry sign) by a key in this "
        "file; refuse the others, at start and on every load (\\[security] "
        "trusted_keys_file; default: signatures not required).", show_default=False,
    )] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="Serve REST and gRPC over TLS with this PEM certificate chain "
        "(with --tls-key; re-read on SIGHUP; \\[security] tls_cert_file; default: no TLS).",
        show_default=False,
    )] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="The PEM private key of --tls-cert (\\[security] tls_key_file).",
        show_default=False,
    )] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        "--tls-client-ca", help="Require client certificates signed by this PEM CA (mTLS; "
        "\\[security] tls_client_ca_file).", show_default=False,
    )] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Deploy on Ray Serve instead (ferry\\[ray]): replicas of ferry's engine "
        "behind Ray's HTTP proxy on --host/--http-port, REST only (docs/deploy.md).",
    )] = False,
    address: Annotated[str | None, typer.Option(
        "--address", help="With --ray: the Ray cluster to deploy to ('auto', "
        "'ray://HOST:10001', a GCS address); the command returns and the cluster keeps "
        "serving. Without it a local Ray instance serves until Ctrl-C.", show_default=False,
    )] = None,
    ray_replicas: Annotated[int | None, typer.Option(
        "--ray-replicas", min=1, help="With --ray: this many replicas (default: Ray "
        "autoscales between 1 and 4).", show_default=False,
    )] = None,
) -> None:
    """Serve models over REST and gRPC until Ctrl-C or SIGTERM (in-flight requests finish).

    Every model is loaded, hash-checked and warmed up before the ports open.

    REST: Open Inference Protocol V2 (JSON and binary tensors), POST /predict, TF Serving.
    gRPC: V2's inference.GRPCInferenceService, plus grpc.health.v1 and reflection.
    Hot swap: import a new version, then kill -HUP PID, --watch, or the repository API.
    Settings: flags beat FERRY_* variables, which beat --config ferry.toml (docs/serving.md).
    Batching, instances and queue bound per model: REPO/NAME/config.toml.

    Examples:
      [bold]ferry serve model-repository[/]
      [bold]ferry serve model-repository --models digits,fraud:3 --workers 2[/]
      [bold]FERRY_HTTP_PORT=9000 ferry serve --config ferry.toml --watch[/]
      [bold]ferry serve model-repository --api-keys-file keys.json[/]
      [bold]ferry serve model-repository --trusted-keys trusted-keys[/]
      [bold]ferry serve s3://bucket/models --watch[/]  (AWS_* credentials, AWS_ENDPOINT_URL)
      [bold]ferry serve model-repository --ray --address auto[/]
      [bold]curl -d '{"data": [[0, 1, ...]]}' http://127.0.0.1:8000/predict[/]
    """
    from ferry.repository.storage import remote_url
    from ferry.server import Endpoints, run
    from ferry.settings import load_settings

    flags: dict[str, Any] = {
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
    security = {key: value for key, value in (("api_keys_file", api_keys_file),
                                              ("audit_log", audit_log),
                                              ("trusted_keys_file", trusted_keys))
                if value is not None}
    security.update((key, value) for key, value in (("tls_cert_file", tls_cert),
                                                    ("tls_key_file", tls_key),
                                                    ("tls_client_ca_file", tls_client_ca))
                    if value is not None)
    if security:
        flags["security"] = security  # merged into [security] of the file and environment
    if repository is None and config is None and "FERRY_REPOSITORY" not in _environ():
        flags["repository"] = state(ctx).repo.location
    settings = load_settings(config, **flags)
    if ray or address is not None or ray_replicas is not None:
        from ferry.cli.ray_serving import serve_on_ray

        serve_on_ray(settings, ray=ray, address=address, replicas=ray_replicas)
        return

    served_from = remote_url(settings.repository) or settings.repository

    def ready(where: Endpoints) -> None:
        out_console.print(
            f"ferry is serving [bold]{', '.join(where.models)}[/] from {served_from}\n"
            f"  REST  {where.url}   (V2: /v2/models/NAME/infer, seed: /predict, "
            f"docs: {where.url}/docs, metrics: {where.url}/metrics)\n"
            f"  gRPC  {where.host}:{where.grpc_port}   (inference.GRPCInferenceService)\n"
            "Ctrl-C stops it after in-flight requests finish.", highlight=False,
        )

    code = run(settings, on_ready=ready)
    if code:  # the server logged why, in one line (ferry.server's worker supervisor)
        raise typer.Exit(code)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
