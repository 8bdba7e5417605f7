"""``ferry build`` and ``ferry deploy k8s``: a container build context, cluster manifests.

Both write files only (no Docker engine, no cluster is contacted) and print the commands to
run next. ferry.deploy is imported inside the commands, so ``ferry --help`` does not pay for
it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ferry.cli.app import app, state
from ferry.cli.console import err_console, out_console

__all__ = ["build", "deploy_app", "k8s"]

deploy_app = typer.Typer(
    name="deploy",
    help="Write deployment manifests for a `ferry build` image (Kubernetes, KServe).",
    no_args_is_help=True,
)
app.add_typer(deploy_app, name="deploy")

Models = Annotated[list[str], typer.Argument(
    metavar="NAME[:V]...", help="Models to carry: 'digits' (its latest version, pinned now) "
    "or 'digits:3'.", show_default=False,
)]
Output = Annotated[Path, typer.Option(
    "--output", "-o", help="Directory to write (new or empty).", show_default=False,
)]


@app.command("build")
def build(
    ctx: typer.Context,
    models: Models,
    output: Output,
    mount: Annotated[bool, typer.Option(
        "--mount", help="Leave the models out of the image: it serves a volume mounted at "
        "/models (docker run -v REPO:/models:ro).",
    )] = False,
    tag: Annotated[str | None, typer.Option(
        "--tag", "-t", help="Image tag in the printed commands (default: ferry-NAME:V of "
        "the first model).", show_default=False,
    )] = None,
) -> None:
    """Write a Docker build context that serves the chosen model versions.

    The Dockerfile starts from python:3.11-slim, installs ferry with only the extras the
    models need (every package pinned by requirements/constraints.txt), runs as a non-root
    user, copies the hash-checked versions in (or takes a /models volume with --mount),
    exposes 8000 (REST) and 8001 (gRPC) and checks /v2/health/live.

    Examples:
      [bold]ferry build digits -o build/digits[/]
      [bold]ferry build digits:3 fraud -o build/ctx --tag registry.example/ferry:1[/]
      [bold]ferry build digits -o build/ctx --mount[/]
    """
    from ferry.deploy.container import build_context
    from ferry.deploy.selection import select_models

    selection = select_models(state(ctx).repo, models)
    context = build_context(selection, output, tag=tag, mount=mount)
    err_console.print(escape(f"wrote a build context for {', '.join(context.refs)} "
                             f"(ferry[{','.join(context.extras)}]) to {context.path}"))
    out_console.print(escape(context.build_command), highlight=False)
    out_console.print(escape(context.run_command), highlight=False)


@deploy_app.command("k8s")
def k8s(
    ctx: typer.Context,
    models: Models,
    output: Output,
    image: Annotated[str | None, typer.Option(
        "--image", help="The image `ferry build` made (default: ferry-NAME:V of the first "
        "model, as ferry build tags it).", show_default=False,
    )] = None,
    replicas: Annotated[int, typer.Option("--replicas", help="Pods at first.")] = 2,
    hpa_min: Annotated[int | None, typer.Option(
        "--hpa-min", help="Fewest pods the autoscaler keeps (default: --replicas).",
        show_default=False,
    )] = None,
    hpa_max: Annotated[int, typer.Option("--hpa-max", help="Most pods the autoscaler makes.")
                       ] = 6,
    cpu: Annotated[str, typer.Option("--cpu", help="CPU per pod (request = limit).")] = "1",
    memory: Annotated[str, typer.Option(
        "--memory", help="Memory per pod (request = limit).")] = "1Gi",
    cpu_target: Annotated[int, typer.Option(
        "--cpu-target", help="CPU use (% of the request) the autoscaler keeps pods at.")
                          ] = 70,
    name: Annotated[str, typer.Option(
        "--name", help="Name of the Deployment, Service, ... and the KServe runtime.")
                    ] = "ferry",
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace of the objects (default: kubectl's).",
        show_default=False,
    )] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Server settings (ferry.toml) to carry into the ConfigMap; "
        "\\[security] files become Secret references.", show_default=False,
    )] = None,
    models_pvc: Annotated[str | None, typer.Option(
        "--models-pvc", help="Mount this PersistentVolumeClaim at /models (for an image "
        "built with --mount).", show_default=False,
    )] = None,
    storage_uri: Annotated[str | None, typer.Option(
        "--storage-uri", help="KServe: where the model repository is (pvc://, s3://, "
        "gs://; default: pvc://NAME-models/).", show_default=False,
    )] = None,
) -> None:
    r"""Write Kubernetes manifests (and KServe resources) that run a `ferry build` image.

    DIR gets configmap.yaml, deployment.yaml, service.yaml, horizontalpodautoscaler.yaml
    and poddisruptionbudget.yaml (kubectl apply -f DIR), and DIR/kserve/ a
    ClusterServingRuntime and an InferenceService using it (kubectl apply -f DIR/kserve).
    Keys and TLS material from --config's \[security] are Secret references: the
    `kubectl create secret` commands that make them are printed.

    Examples:
      [bold]ferry deploy k8s digits -o deploy/k8s --image registry.example/ferry-digits:3[/]
      [bold]ferry deploy k8s digits -o deploy/k8s --replicas 3 --hpa-max 10 --cpu 2 --memory 2Gi[/]
      [bold]ferry deploy k8s digits -o deploy/k8s --config ferry.toml[/]
    """
    from ferry.deploy.documents import check_empty_dir, write_documents
    from ferry.deploy.k8s import ClusterOptions, kubernetes_objects, secret_commands, secret_mounts
    from ferry.deploy.kserve import cluster_serving_runtime, inference_service
    from ferry.deploy.selection import select_models
    from ferry.settings import load_settings

    settings = load_settings(config)
    check_empty_dir(output, "ferry deploy k8s")
    selection = select_models(state(ctx).repo, models)
    first = selection.manifests[0]
    options = ClusterOptions(
        image=image or f"ferry-{first.name.lower()}:{first.version}", name=name,
        namespace=namespace, replicas=replicas, hpa_min=hpa_min, hpa_max=hpa_max, cpu=cpu,
        memory=memory, cpu_target=cpu_target, models_pvc=models_pvc)
    objects = kubernetes_objects(selection, settings, options)
    kserve = [cluster_serving_runtime(options),
              inference_service(selection, options, storage_uri or f"pvc://{name}-models/")]
    written = write_documents(output, objects) + write_documents(output / "kserve", kserve)
    err_console.print(f"wrote {len(written)} manifests for {escape(', '.join(selection.refs))}"
                      f" to {escape(str(output))}")
    for line in secret_commands(secret_mounts(settings, name), namespace):
        out_console.print(escape(line), highlight=False)
    out_console.print(escape(f"kubectl apply -f {output}"), highlight=False)
    out_console.print(escape(f"kubectl apply -f {output / 'kserve'}"), highlight=False)
