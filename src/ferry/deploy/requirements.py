"""What an image must install to serve chosen models: ferry's extras, pinned exactly.

Each model's manifest names the runtime that serves it; a runtime maps to the extra that
provides it (ONNX Runtime is in ferry's core, so ONNX models need only ``serve``). The
versions come from the project's ``requirements/constraints.txt``, which pins every package
of every extra: the image gets ferry's requirements for those extras written as ``==``
pins, and installs with the whole constraints file, so nothing pip pulls in floats.

Both files are read from ferry's source checkout (``pyproject.toml`` and
``requirements/constraints.txt`` beside ``src/ferry``), which the image installs ferry from.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ferry.errors import ArtifactError, ConfigError
from ferry.repository.manifest import Manifest

__all__ = [
    "APT_PACKAGES",
    "RUNTIME_EXTRAS",
    "SourceTree",
    "extras_for",
    "find_source_tree",
    "normalize",
    "pinned_requirements",
    "read_constraints",
]

#: The extra that provides each runtime a manifest can name (None: ferry's core).
RUNTIME_EXTRAS: dict[str, str | None] = {
    "onnxruntime": None,
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "torch",
    "torchscript": "torch",
    "tensorflow": "tensorflow",
    "pmml": "pmml",
}

#: Debian packages an extra needs beyond Python ones (pypmml runs on a Java runtime).
APT_PACKAGES: dict[str, tuple[str, ...]] = {"pmml": ("default-jre-headless",)}

#: Every image serves: the engine, REST and gRPC.
BASE_EXTRA = "serve"

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*"
    r"(?P<spec>[^;]*?)\s*(?P<marker>;.*)?$")


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``PyJWT`` -> ``pyjwt``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_for(manifests: Iterable[Manifest]) -> tuple[str, ...]:
    """The extras an image needs to serve ``manifests``: ``serve`` and one per native runtime.

    Raises:
        ArtifactError: a manifest names a runtime this ferry does not know, or is a
            pipeline.
    """
    extras = {BASE_EXTRA}
    for manifest in manifests:
        if manifest.runtime == "pipeline":
            # TODO(issue 20): carry a pipeline with the versions its steps name.
            raise ArtifactError(
                f"model {manifest.name}:{manifest.version} is a pipeline; ferry build and "
                "ferry deploy carry models only for now",
                hint="name the models its steps run instead")
        try:
            extra = RUNTIME_EXTRAS[manifest.runtime]
        except KeyError:
            raise ArtifactError(
                f"model {manifest.name}:{manifest.version} is served by runtime "
                f"{manifest.runtime!r}, which ferry build knows no extra for (known: "
                f"{', '.join(sorted(RUNTIME_EXTRAS))})") from None
        if extra is not None:
            extras.add(extra)
    return (BASE_EXTRA, *sorted(extras - {BASE_EXTRA}))


@dataclass(frozen=True)
class SourceTree:
    """ferry's source checkout: what the image installs ferry from, and its pins."""

    root: Path

    @property
    def pyproject(self) -> Path:
        """``pyproject.toml``: ferry's requirements per extra."""
        return self.root / "pyproject.toml"

    @property
    def constraints(self) -> Path:
        """``requirements/constraints.txt``: an exact version of every package."""
        return self.root / "requirements" / "constraints.txt"

    def files(self) -> list[Path]:
        """What building ferry needs, relative to the root (no tests, no caches)."""
        wanted = [Path("pyproject.toml"), Path("README.md"),
                  Path("requirements/constraints.txt")]
        wanted += [p.relative_to(self.root) for p in self.root.glob("LICENSE*")]
        package = self.root / "src" / "ferry"
        wanted += sorted(path.relative_to(self.root) for path in package.rglob("*")
                         if path.is_file() and "__pycache__" not in path.parts
                         and path.suffix not in (".pyc", ".pyo"))
        return wanted


def find_source_tree(start: Path | None = None) -> SourceTree:
    """The checkout this ferry runs from (``src/ferry`` beside ``pyproject.toml``).

    Raises:
        ConfigError: ferry is not running from a source checkout (installed from a wheel),
            or the checkout lacks its constraints file.
    """
    here = (start or Path(__file__)).resolve()
    for root in here.parents:
        if (root / "pyproject.toml").is_file() and (root / "src" / "ferry").is_dir():
            tree = SourceTree(root)
            if not tree.constraints.is_file():
                raise ConfigError(f"{tree.constraints} is missing: the image's packages are "
                                  "pinned from it")
            return tree
    raise ConfigError(
        "ferry build installs ferry into the image from its source checkout, and this ferry "
        f"was not run from one ({here})",
        hint="run it from a clone of ferry: pip install -e . inside it")


def read_constraints(path: Path) -> dict[str, tuple[str, str]]:
    """``normalized name -> (name, version)`` of a constraints file's ``name==version`` lines.

    Raises:
        ConfigError: a line is not ``name==version`` (a comment or blank line is fine).
    """
    pins: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, sep, version = text.partition("==")
        if not sep or not version.strip() or not _REQUIREMENT.fullmatch(name):
            raise ConfigError(f"{path}:{number}: expected 'name==version', got {text!r}")
        pins[normalize(name.strip())] = (name.strip(), version.strip())
    return pins


def pinned_requirements(tree: SourceTree, extras: Iterable[str]) -> list[str]:
    """The requirements ferry declares for ``extras`` (core included), each pinned ``==``.

    Extras that name other extras (``serve`` -> ``ferry[grpc,rest,security]``) are
    expanded; a package's own extras stay (``PyJWT[crypto]==2.10.1``).

    Raises:
        ConfigError: an extra does not exist, or constraints.txt pins no version of a
            requirement.
    """
    project = tomllib.loads(tree.pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    pins = read_constraints(tree.constraints)
    wanted: list[str] = list(project.get("dependencies", []))
    todo, done = list(extras), set[str]()
    while todo:
        extra = todo.pop(0)
        if extra in done:
            continue
        done.add(extra)
        if extra not in optional:
            raise ConfigError(f"ferry has no extra {extra!r} (extras: "
                              f"{', '.join(sorted(optional))})")
        for requirement in optional[extra]:
            match = _REQUIREMENT.fullmatch(requirement)
            if match and normalize(match["name"]) == "ferry":
                todo += [e.strip() for e in (match["extras"] or "[]")[1:-1].split(",")]
            else:
                wanted.append(requirement)
    return _pin_all(wanted, pins, tree.constraints)


def _pin_all(requirements: list[str], pins: dict[str, tuple[str, str]],
             where: Path) -> list[str]:
    pinned: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.fullmatch(requirement)
        if match is None:
            raise ConfigError(f"cannot read ferry's requirement {requirement!r}")
        key = normalize(match["name"])
        if key not in pins:
            raise ConfigError(f"{where} pins no version of {match['name']!r}, which ferry "
                              f"requires ({requirement!r})",
                              hint="regenerate the constraints file (docs/development.md)")
        name, version = pins[key]
        line = f"{name}{match['extras'] or ''}=={version}{match['marker'] or ''}"
        # Two extras may name one package (tensorflow-cpu in keras and tensorflow): once.
        if key not in pinned or len(line) > len(pinned[key]):
            pinned[key] = line
    return [pinned[key] for key in sorted(pinned)]
