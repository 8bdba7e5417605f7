"""``ferry build``: a Docker build context that serves chosen model versions.

The context (written into an empty directory) holds:

- ``Dockerfile``: a slim Python base pinned by tag, the Python packages installed into a
  virtual environment with ``pip install --constraint constraints.txt --requirement
  requirements.txt``, a non-root user, the models baked in (or a ``/models`` volume with
  ``mount``), ports, a ``HEALTHCHECK`` on ``/v2/health/live``, ``ferry serve`` as entry;
- ``requirements.txt``: ferry (from ``ferry-src/``) with only the extras the models need,
  and ferry's own requirements for them as ``==`` pins;
- ``constraints.txt``: ferry's constraints, an exact version of every package;
- ``ferry.toml``: the server settings (the pinned models, every address, the ports);
- ``ferry-src/``: ferry's source, built into a wheel by pip inside the image;
- ``model-repository/``: each chosen version, hash-checked, with its model's
  ``config.toml`` (not with ``mount``);
- ``.dockerignore``.

No Docker engine is needed to write it; :class:`BuildContext` carries the ``docker build``
and ``docker run`` commands to print.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ferry import __version__
from ferry.deploy.config import CONFIG_PATH, render_toml
from ferry.deploy.documents import check_empty_dir
from ferry.deploy.requirements import (
    APT_PACKAGES,
    SourceTree,
    extras_for,
    find_source_tree,
    pinned_requirements,
)
from ferry.deploy.selection import Selection

__all__ = [
    "BASE_IMAGE",
    "GRPC_PORT",
    "HTTP_PORT",
    "MODELS_PATH",
    "UID",
    "VENV",
    "BuildContext",
    "build_context",
    "install_command",
]

#: The base image, pinned by tag: Debian slim with the Python ferry is tested on.
BASE_IMAGE = "python:3.11-slim"
#: The non-root user (and group) the server runs as, by number so Kubernetes can check it.
UID = 10001
#: Where the image keeps its virtual environment, its models and its settings.
VENV = "/opt/ferry/venv"
MODELS_PATH = "/models"
HTTP_PORT = 8000
GRPC_PORT = 8001

_MODELS_DIR = "model-repository"
_SOURCE_DIR = "ferry-src"


@dataclass(frozen=True)
class BuildContext:
    """A written build context: where it is (as given), what it serves, how to build and run it."""

    path: Path
    tag: str
    refs: tuple[str, ...]
    extras: tuple[str, ...]
    mount: bool
    repository: Path

    @property
    def build_command(self) -> str:
        """The ``docker build`` command, for the context's directory."""
        return f"docker build -t {shlex.quote(self.tag)} {shlex.quote(str(self.path))}"

    @property
    def run_command(self) -> str:
        """The ``docker run`` command: read-only root, a tmpfs /tmp, both ports published."""
        volume = (f" -v {shlex.quote(str(self.repository.resolve()))}:{MODELS_PATH}:ro"
                  if self.mount else "")
        return (f"docker run --rm --read-only --tmpfs /tmp -p {HTTP_PORT}:{HTTP_PORT} "
                f"-p {GRPC_PORT}:{GRPC_PORT}{volume} {shlex.quote(self.tag)}")


def install_command(venv: str = VENV) -> str:
    """The shell command the Dockerfile installs ferry with, run in the context's directory.

    The same command builds the same environment anywhere else (the tests run it with
    another ``venv``).
    """
    pip = f"{venv}/bin/pip"
    return (f"python -m venv {venv} && {pip} install "
            "--constraint constraints.txt --requirement requirements.txt")


def build_context(selection: Selection, out: Path, *, tag: str | None = None,
                  mount: bool = False, source: SourceTree | None = None) -> BuildContext:
    """Write a build context for ``selection`` into ``out`` (new or empty).

    Args:
        selection: the verified versions to serve.
        out: the directory to write; created if missing, refused if not empty.
        tag: the image tag in the printed commands (default ``ferry-NAME:VERSION`` of the
            first model).
        mount: leave the models out: the image serves a volume mounted at ``/models``.
        source: ferry's checkout (default: the one this ferry runs from).

    Raises:
        InputError: ``out`` is a file or a non-empty directory.
        ConfigError: ferry does not run from a source checkout, or a pin is missing.
        ArtifactError: a model's runtime maps to no extra.
    """
    check_empty_dir(out, "ferry build")
    source = source or find_source_tree()
    extras = extras_for(selection.manifests)
    first = selection.manifests[0]
    tag = tag or f"ferry-{first.name.lower()}:{first.version}"
    context = BuildContext(out, tag, tuple(selection.refs), extras, mount,
                           selection.repository.root)
    out.mkdir(parents=True, exist_ok=True)
    _copy_source(source, out / _SOURCE_DIR)
    shutil.copyfile(source.constraints, out / "constraints.txt")
    _write(out / "requirements.txt", _requirements(source, extras))
    _write(out / "ferry.toml", _server_config(context))
    if not mount:
        _copy_models(selection, out / _MODELS_DIR)
    _write(out / ".dockerignore", _template("dockerignore.tmpl"))
    _write(out / "Dockerfile", _dockerfile(context))
    return context


def _requirements(source: SourceTree, extras: tuple[str, ...]) -> str:
    pins = pinned_requirements(source, extras)
    head = [
        f"# Made by `ferry build`: ferry[{','.join(extras)}] and its requirements, pinned.",
        "# Install with: pip install --constraint constraints.txt --requirement "
        "requirements.txt",
        f"./{_SOURCE_DIR}[{','.join(extras)}]",
    ]
    return "\n".join([*head, *pins]) + "\n"


def _server_config(context: BuildContext) -> str:
    settings = {
        "repository": MODELS_PATH,
        "models": list(context.refs),
        "host": "0.0.0.0",  # a container's ports are reached from outside it
        "http_port": HTTP_PORT,
        "grpc_port": GRPC_PORT,
        "log_format": "json",
    }
    return render_toml(settings, header=f"Made by `ferry build` for {', '.join(context.refs)}.")


def _dockerfile(context: BuildContext) -> str:
    apt = sorted({pkg for extra in context.extras for pkg in APT_PACKAGES.get(extra, ())})
    apt_step = ("\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends "
                f"{' '.join(apt)} \\\n && rm -rf /var/lib/apt/lists/*\n" if apt else "")
    if context.mount:
        models_step = (f"# The models come from a volume: docker run -v REPO:{MODELS_PATH}:ro\n"
                       f"VOLUME {MODELS_PATH}\n")
    else:
        models_step = f"COPY {_MODELS_DIR} {MODELS_PATH}\n"
    return string.Template(_template("Dockerfile.tmpl")).substitute(
        ferry_version=__version__, models=", ".join(context.refs), tag=context.tag,
        extras=",".join(context.extras), base_image=BASE_IMAGE, apt_step=apt_step,
        uid=UID, gid=UID, install_command=install_command(), config_path=CONFIG_PATH,
        models_step=models_step, http_port=HTTP_PORT, grpc_port=GRPC_PORT,
    )


def _template(name: str) -> str:
    return resources.files("ferry.deploy").joinpath("templates", name).read_text("utf-8")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _copy_source(source: SourceTree, dest: Path) -> None:
    for relative in source.files():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.root / relative, target)


def _copy_models(selection: Selection, dest: Path) -> None:
    """Copy each version directory and its model's config.toml, readable by everyone."""
    for stored in selection.versions:
        model_dir = dest / stored.manifest.name
        shutil.copytree(stored.path, model_dir / str(stored.manifest.version),
                        copy_function=shutil.copyfile)
        config = stored.path.parent / "config.toml"
        if config.is_file():
            shutil.copyfile(config, model_dir / "config.toml")
    for root, dirs, files in os.walk(dest):
        for name in dirs:
            Path(root, name).chmod(0o755)
        for name in files:
            Path(root, name).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
