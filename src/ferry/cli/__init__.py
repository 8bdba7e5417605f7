"""The ``ferry`` command line: one module per group of verbs under ``ferry.cli.commands``."""

from ferry.cli import commands as _commands  # registers the verbs on `app`
from ferry.cli.app import app, main

__all__ = ["app", "main"]
del _commands
