"""Where the CLI writes: results to stdout, progress and errors to stderr."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console

__all__ = ["ConsoleProgress", "err_console", "out_console", "print_json"]

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class ConsoleProgress:
    """Shows a spinner while a step runs (on a terminal) and a line when it ends."""

    def __init__(self, console: Console = err_console) -> None:
        self.console = console

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        """Run a step under a spinner, then print ``✓ text (1.2 s)`` or ``✗ text``."""
        start = time.perf_counter()
        try:
            with self.console.status(f"{text}...", spinner="dots"):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/] {text}", highlight=False)
            raise
        elapsed = time.perf_counter() - start
        self.console.print(f"[green]✓[/] {text} [dim]({elapsed:.1f} s)[/]", highlight=False)


def print_json(data: Any) -> None:
    """Print JSON to stdout, indented, with no colour codes (it is meant to be piped)."""
    print(json.dumps(data, indent=2, default=str))
