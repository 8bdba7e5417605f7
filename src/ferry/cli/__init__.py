"""The ``ferry`` command line: one module per group of verbs under ``ferry.cli.commands``.

It needs the ``cli`` extra (typer, rich, onnx), which ``serve``, ``demo`` and every
framework's extra include; with the core install alone (``pip install ferry``, enough for
``ferry.load``), :func:`main` says which extra to install instead of failing on an import.
"""

from __future__ import annotations

import sys

_CLI_MODULES = ("typer", "click", "rich")

try:
    from ferry.cli import commands as _commands  # registers the verbs on `app`
    from ferry.cli.app import app, main
except ModuleNotFoundError as _missing:
    if (_missing.name or "").partition(".")[0] not in _CLI_MODULES:
        raise

    def main(argv: list[str] | None = None) -> int:
        """Say that the ``ferry`` command needs the ``cli`` extra; exit status 2."""
        print("error: the ferry command needs the optional dependencies of ferry[cli], "
              "which are not installed (ferry.load works without them)\n"
              "hint: install them with: pip install 'ferry[cli]'", file=sys.stderr)
        return 2
else:
    del _commands

__all__ = ["app", "main"]
