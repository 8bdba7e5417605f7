"""What ferry's HTTP/1.1 protocol needs from uvicorn, checked once when ``ferry serve`` starts.

uvicorn runs the REST port (sockets, the ``date`` header, graceful shutdown), and every
connection is ferry's own protocol (:mod:`~ferry.protocols.rest.http11`), handed over as
``uvicorn.Config(http=<class>)``. That argument is uvicorn's documented seam; what the
protocol does with what it is given is not documented, and relies on uvicorn internals:

* the protocol class is called as ``cls(config=, server_state=, app_state=, _loop=)``;
* ``Config``: ``loaded``, ``load()``, ``loaded_app``, ``timeout_keep_alive``, ``root_path``;
* ``uvicorn.server.ServerState``: ``connections``, ``tasks``, ``total_requests``,
  ``default_headers``;
* on a graceful stop uvicorn's server calls ``shutdown()`` on every open connection.

Those internals may change in any uvicorn release, so ``pyproject.toml`` bounds uvicorn to
the series ferry is tested with (:data:`TESTED_RANGE`), and :func:`check_uvicorn` refuses
to start on any other version with one line naming the installed version, the tested range
and the fix. It then checks the attributes above on a real ``Config`` and ``ServerState``,
and the constructor and ``shutdown`` on uvicorn's own HTTP protocol (which its server
creates and stops exactly as it does ferry's), so a patched uvicorn that lost one fails
here too, before any model loads, rather than on the first connection.

Refusing, not falling back to uvicorn's own protocol: the fallback would serve without the
bounds of :class:`~ferry.protocols.rest.limits.HttpLimits` (head size, read-ahead, timeouts)
and with other answers to malformed requests, a different server from the one documented
and tested. An operator is better served by a clear error than by a quiet downgrade.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
from typing import Any

from ferry.errors import ConfigError

__all__ = ["TESTED_PIN", "TESTED_RANGE", "check_uvicorn"]

#: The uvicorn versions ferry is tested with, as ``pyproject.toml`` writes them; keep the
#: three together (and ``requirements/constraints.txt``'s pin inside the range).
TESTED_RANGE = ">=0.54,<0.55"
#: The version the fix in the error message installs (``requirements/constraints.txt``).
TESTED_PIN = "0.54.0"
_LOWEST = (0, 54)  # inclusive (major, minor)
_BEYOND = (0, 55)  # exclusive

_CONFIG_ATTRIBUTES = ("loaded", "load", "loaded_app", "timeout_keep_alive", "root_path")
_STATE_ATTRIBUTES = ("connections", "tasks", "total_requests", "default_headers")
_PROTOCOL_PARAMETERS = ("config", "server_state", "app_state", "_loop")


def check_uvicorn() -> None:
    """Refuse to serve on a uvicorn that ferry's HTTP/1.1 protocol is not tested with.

    Raises:
        ConfigError: uvicorn is missing, outside :data:`TESTED_RANGE`, or lacks a part of
            its internals the protocol uses (one line, with the ``pip install`` that fixes it).
    """
    fix = f"pip install 'uvicorn=={TESTED_PIN}'"
    try:
        installed = _installed_version()
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"uvicorn is not installed; ferry serve needs uvicorn{TESTED_RANGE}: "
                          f"{fix}") from None
    if not _in_range(installed):
        raise ConfigError(f"uvicorn {installed} is installed, but ferry's HTTP/1.1 protocol "
                          f"relies on uvicorn internals and is tested only with "
                          f"uvicorn{TESTED_RANGE}: {fix}")
    missing = _missing_parts()
    if missing:
        raise ConfigError(f"uvicorn {installed} lacks {', '.join(missing)}, which ferry's "
                          f"HTTP/1.1 protocol uses (tested with uvicorn{TESTED_RANGE}): {fix}")


def _installed_version() -> str:
    return importlib.metadata.version("uvicorn")


def _in_range(version: str) -> bool:
    """Whether ``version``'s (major, minor) lies in the tested range (pre-releases included)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None:
        return False
    release = (int(found[1]), int(found[2]))
    return _LOWEST <= release < _BEYOND


def _missing_parts() -> list[str]:
    """The parts of uvicorn's internals the protocol uses that this uvicorn lacks."""
    import uvicorn
    import uvicorn.server
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _Probe(asyncio.Protocol):  # the class uvicorn's Config must keep as its protocol
        pass

    config = uvicorn.Config(_probe_app, http=_Probe, ws="none", lifespan="off",
                            log_config=None)
    missing: list[str] = []
    try:
        config.load()
    except Exception as exc:  # its attributes are reported below
        missing.append(f"a working Config.load() ({type(exc).__name__})")
    if getattr(config, "http_protocol_class", None) is not _Probe:
        missing.append("Config(http=<protocol class>)")
    missing += [f"Config.{name}" for name in _CONFIG_ATTRIBUTES if not hasattr(config, name)]
    state = uvicorn.server.ServerState()
    missing += [f"ServerState.{name}" for name in _STATE_ATTRIBUTES if not hasattr(state, name)]
    parameters = inspect.signature(H11Protocol).parameters
    missing += [f"protocol argument {name!r}" for name in _PROTOCOL_PARAMETERS
                if name not in parameters]
    if not callable(getattr(H11Protocol, "shutdown", None)):
        missing.append("protocol shutdown()")
    return missing


async def _probe_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app for the probing ``Config``; never called."""
