"""The ``ferry.toml`` a deployment ships: server settings written as TOML.

The image and the Kubernetes ConfigMap carry the server's settings as a file, so that
``ferry serve --config /etc/ferry/ferry.toml`` reads exactly what was generated. Only what
differs from ferry's defaults is written; :func:`render_toml` writes the small part of TOML
that settings need (strings, numbers, booleans, lists of them, nested tables).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["CONFIG_PATH", "render_toml"]

#: Where the image and the pods read the server settings from.
CONFIG_PATH = "/etc/ferry/ferry.toml"


def render_toml(data: Mapping[str, Any], *, header: str = "") -> str:
    """TOML text for ``data`` (``None`` values are left out: TOML has no null).

    Raises:
        TypeError: a value is of a type settings never hold (bytes, a set...).
    """
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += _table(data, prefix=())
    return "\n".join(lines).strip("\n") + "\n"


def _table(data: Mapping[str, Any], prefix: tuple[str, ...]) -> list[str]:
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        path = (*prefix, key)
        lines += ["", f"[{'.'.join(_key(part) for part in path)}]", *_table(value, path)]
    return lines


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are TOML basic-string escapes (json.dumps writes no "\/").
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as a TOML value")
