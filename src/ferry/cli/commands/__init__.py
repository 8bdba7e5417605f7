"""The verbs of ``ferry``; importing this package registers them on the app."""

from ferry.cli.commands import (
    demo,
    deploying,
    exporting,
    importing,
    keys,
    optimizing,
    pipelines,
    predicting,
    repository,
    serving,
    signing,
)

__all__ = [
    "demo", "deploying", "exporting", "importing", "keys", "optimizing", "pipelines",
    "predicting", "repository", "serving", "signing",
]
