"""The verbs of ``ferry``; importing this package registers them on the app."""

from ferry.cli.commands import (
    demo,
    importing,
    keys,
    predicting,
    repository,
    serving,
    signing,
)

__all__ = ["demo", "importing", "keys", "predicting", "repository", "serving", "signing"]
