"""Kubernetes objects written as YAML files, one file per object (PyYAML, ``ferry[deploy]``).

Multi-line strings (the ConfigMap's ``ferry.toml``) are written as literal blocks, so the
file reads as the TOML it carries.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ferry.errors import InputError, MissingDependencyError

__all__ = ["check_empty_dir", "file_name", "write_documents"]


def file_name(obj: dict[str, Any]) -> str:
    """``deployment.yaml``, ``horizontalpodautoscaler.yaml``: the kind, lowercased."""
    return f"{obj['kind'].lower()}.yaml"


def check_empty_dir(out: Path, verb: str) -> None:
    """Refuse an ``out`` that is a file or a directory with anything in it.

    Raises:
        InputError: ``out`` exists and is not an empty directory.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "not a directory" if not out.is_dir() else "not empty"
        raise InputError(f"-o {out}: {what}; {verb} writes into a new or empty directory",
                         hint="name a new directory")


def write_documents(out: Path, objects: Iterable[dict[str, Any]]) -> list[Path]:
    """Write each object to ``out/<kind>.yaml``; return the paths, in order.

    Raises:
        MissingDependencyError: PyYAML is not installed.
    """
    dump = _dumper()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in objects:
        path = out / file_name(obj)
        path.write_text(dump(obj), encoding="utf-8")
        paths.append(path)
    return paths


def _dumper() -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise MissingDependencyError("writing Kubernetes manifests", "deploy") from None

    class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # no &anchors: each object reads on its own

    def _text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _text)

    def dump(obj: dict[str, Any]) -> str:
        return str(yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                             allow_unicode=True))

    return dump
