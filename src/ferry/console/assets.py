"""The console's static files, shipped inside the package: no CDN, no Node at install time.

``static/`` holds ferry's own CSS and JavaScript and ``static/vendor/`` two libraries as
their authors publish them on npm, each beside its licence: uPlot 1.6.32 (``uPlot.iife.min.js``
and ``uPlot.min.css``, MIT) draws the live charts, Redoc 2.5.4 (``redoc.standalone.js``,
MIT) renders ``/docs``. They are served flat by file name (``/console/static/<name>``):
only the files found here at first use can be named, so no path from a client ever reaches
the file system. Licence files are listed but not served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["Asset", "asset", "asset_names"]

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png"}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, media type and entity tag."""

    body: bytes
    media_type: str
    etag: str


_ASSETS: dict[str, Asset] | None = None


def _load() -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    pending = [resources.files("ferry.console").joinpath("static")]
    while pending:
        folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append(entry)
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            media_type = _TYPES.get(suffix)
            if media_type is None:  # LICENSE files and the like: in the package, not served
                continue
            if entry.name in found:
                raise RuntimeError(f"two console assets are named {entry.name!r}")
            body = entry.read_bytes()
            found[entry.name] = Asset(body, media_type,
                                      '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return found


def asset_names() -> list[str]:
    """The names that ``/console/static/<name>`` serves."""
    return sorted(_assets())


def _assets() -> dict[str, Asset]:
    global _ASSETS
    if _ASSETS is None:
        _ASSETS = _load()
    return _ASSETS


def asset(name: str) -> Asset | None:
    """The asset called ``name``, or None."""
    return _assets().get(name)
