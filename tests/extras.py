"""The optional extras the tests need: skipped locally only when truly absent, never in CI.

``pytest.importorskip`` turns a missing framework into a skipped suite, and a run that skips
every XGBoost test still prints "passed". ``make test`` installs every extra
(``pip install -e '.[all,dev]'``), so under it a missing extra is a broken install:

* :func:`require` replaces ``pytest.importorskip`` at the top of a format's test module. It
  fails (a collection error naming the module and its extra) when the run is strict, or when
  the module's distribution is installed but does not import; it skips only a local run
  whose install truly lacks the extra.
* :func:`problems`, called by ``tests/conftest.py`` when the session starts, lists every
  distribution of ``.[all,dev]`` that is not installed and every :data:`MODULES` entry that
  cannot be found; a strict run stops there with one line per problem.

A run is strict under CI (``CI=true``, as ``.ci/run`` and most CI services set) and under
``make test`` (it sets ``FERRY_REQUIRE_EXTRAS=1``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["INSTALL", "MODULES", "TEST_EXTRAS", "problems", "require", "requirements", "strict"]

ROOT = Path(__file__).resolve().parents[1]

#: The extras ``make test`` installs, and the command it installs them with.
TEST_EXTRAS = ("all", "dev")
INSTALL = "pip install -c requirements/constraints.txt -e '.[all,dev]' (make test does)"

#: The top-level modules test files ``require`` (``require("skops.io")`` counts as skops),
#: and the extra of pyproject.toml each comes from.
MODULES = {
    "grpc_tools": "dev",
    "lightgbm": "lightgbm",
    "moto": "test",
    "onnxmltools": "xgboost",
    "pypmml": "pmml",
    "ray": "ray",
    "skl2onnx": "sklearn",
    "sklearn": "sklearn",
    "s3fs": "s3",
    "skops": "sklearn",
    "tensorflow": "tensorflow",
    "tf2onnx": "tensorflow",
    "xgboost": "xgboost",
}

_TRUE = ("1", "true", "yes")


def strict() -> bool:
    """True under CI (``CI=true``) or ``make test`` (``FERRY_REQUIRE_EXTRAS=1``)."""
    return (os.environ.get("CI", "").lower() in _TRUE
            or os.environ.get("FERRY_REQUIRE_EXTRAS", "").lower() in _TRUE)


def _missing_line(module: str, why: object) -> str:
    extra = MODULES.get(module.partition(".")[0], "?")
    return (f"missing test extra: {module} (ferry[{extra}]) cannot be imported ({why}); "
            f"install it: {INSTALL}")


def _distributions(module: str) -> list[str]:
    """The installed distributions that provide top-level ``module`` (empty: none does)."""
    top = module.partition(".")[0]
    return importlib.metadata.packages_distributions().get(top, [])


def require(module: str) -> ModuleType:
    """Import ``module`` for a test module, as ``pytest.importorskip`` would, but loudly.

    Strict runs fail on any import error; local runs fail too when the module's distribution
    is installed (a broken install is no reason to skip), and skip only when it is not.
    """
    top = module.partition(".")[0]
    if top not in MODULES:
        raise ValueError(f"require({module!r}): add it to tests/extras.py MODULES with its "
                         "extra, so that the session check covers it too")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        error = exc  # failed or skipped below, outside the handler: one message, no chain
    if strict():
        pytest.fail(_missing_line(module, error), pytrace=False)
    installed = _distributions(module)
    if installed:
        pytest.fail(f"{module} is installed ({', '.join(installed)}) but does not import: "
                    f"{error}", pytrace=False)
    pytest.skip(f"{module} is not installed: ferry[{MODULES[top]}] is not part of this "
                f"install ({INSTALL})", allow_module_level=True)


def requirements(pyproject: Path, extras: tuple[str, ...]) -> list[tuple[str, Requirement]]:
    """Every third-party requirement of ``extras``, with the extra that names it."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own = canonicalize_name(project["name"])
    seen: set[str] = set()
    found: list[tuple[str, Requirement]] = []

    def expand(extra: str) -> None:
        if extra in seen:
            return
        seen.add(extra)
        for line in optional[extra]:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(requirement.name) == own:
                for inner in sorted(requirement.extras):
                    expand(inner)
            else:
                found.append((extra, requirement))

    for extra in extras:
        expand(extra)
    return found


def problems(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """One line per distribution of the test install that is missing and per module of
    :data:`MODULES` that cannot be found (nothing is imported: this runs at session start)."""
    lines = []
    for extra, requirement in requirements(pyproject, TEST_EXTRAS):
        try:
            importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"missing test extra: {requirement.name} (ferry[{extra}]: "
                         f"{requirement}) is not installed; install it: {INSTALL}")
    for module in sorted(MODULES):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            lines.append(_missing_line(module, exc))
            continue
        if spec is None:
            lines.append(_missing_line(module, "no module of that name is installed"))
    return lines
