"""Runtimes: the one interface that runs a stored model, ONNX Runtime first."""

from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions, usable_cpus
from ferry.runtimes.registry import load_runtime, register_runtime, runtime_class, runtime_names

__all__ = [
    "Arrays",
    "Runtime",
    "RuntimeOptions",
    "load_runtime",
    "register_runtime",
    "runtime_class",
    "runtime_names",
    "usable_cpus",
]
