"""The ``ferry`` Typer application, its global options, and error reporting.

Errors are one line on stderr and an exit status, never a traceback: 2 for anything the
user can fix (click's convention for usage errors), 1 for a bug. ``--debug`` (or
``FERRY_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from ferry import __version__
from ferry.cli.console import err_console
from ferry.errors import FerryError, InternalError, MissingDependencyError
from ferry.repository import Repository

__all__ = ["EXTRA_OF", "CliState", "app", "main", "state"]

#: Top-level module -> the extra that installs it, for a command that imports one missing
#: (installed with the core package alone, or with other extras): one line naming the extra.
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(("uvicorn", "starlette", "orjson", "httptools", "uvloop",
                     "prometheus_client", "pydantic_settings", "grpc", "grpc_health",
                     "grpc_reflection", "google"), "serve"),
    "httpx": "client",
    **dict.fromkeys(("jwt", "cryptography"), "security"),
    "onnx": "cli",
    **dict.fromkeys(("tensorflow", "keras", "tf2onnx", "h5py"), "keras"),
    **dict.fromkeys(("torch", "onnxscript"), "torch"),
    **dict.fromkeys(("sklearn", "skl2onnx", "skops", "joblib", "pandas"), "sklearn"),
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnxmltools": "xgboost",
    "pypmml": "pmml",
}

app = typer.Typer(
    name="ferry",
    help=(
        "Carry trained models from the lab into production.\n\n"
        "Import a model as you saved it (Keras .h5/.keras, ONNX, ...), get a versioned, "
        "hash-checked ONNX artifact whose answers are proven equal to the original's, and "
        "run it.\n\nStart with: ferry demo"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class CliState:
    """Global options, shared by every command through the click context."""

    repo: Repository
    debug: bool = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ferry {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    repo: Annotated[Path, typer.Option(
        "--repo", "-r", envvar="FERRY_REPOSITORY", show_default=True,
        help="Model repository directory (created on first import).",
    )] = Path("model-repository"),
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="FERRY_DEBUG", help="Show tracebacks instead of one-line errors.",
    )] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    ctx.obj = CliState(repo=Repository(repo), debug=debug)


def state(ctx: typer.Context) -> CliState:
    """The global options of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the console script exits with it)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("FERRY_DEBUG", "") not in ("", "0", "false")
    try:
        result = app(args=args, prog_name="ferry", standalone_mode=False)
    except TyperException as exc:  # usage errors: shown the way Typer shows them
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except FerryError as exc:
        if debug:
            raise
        _report(exc)
        return 1 if isinstance(exc, InternalError) else 2
    except Exception as exc:
        if debug:
            raise
        extra = _extra_missing(exc)
        if extra is not None:
            _report(MissingDependencyError(f"ferry {_command(args)}".strip(), extra))
            return 2
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", markup=True,
            highlight=False,
        )
        err_console.print("run again with --debug to see the traceback, and please report it")
        return 1
    return result if isinstance(result, int) else 0


def _extra_missing(exc: Exception) -> str | None:
    """The extra that would install the module a command failed to import, if known."""
    if not isinstance(exc, ModuleNotFoundError):
        return None
    return EXTRA_OF.get((exc.name or "").partition(".")[0])


def _command(args: list[str]) -> str:
    """The verb in ``args``: the first word that is neither an option nor --repo's value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--repo", "-r"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def _report(exc: FerryError) -> None:
    # Messages quote user text and code ("ferry[torch]", "x[0]"): never read them as markup.
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", highlight=False)
