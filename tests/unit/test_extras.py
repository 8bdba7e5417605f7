"""A missing extra fails a strict run (CI, ``make test``) with a line naming it (tests/extras.py).

The subprocess runs hide one installed module (``lightgbm``) behind a ``sys.meta_path``
blocker loaded as a pytest plugin (``-p``), so the module's files and metadata stay installed
while every import and lookup of it fails, as in a broken or partial install.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import extras
from extras import MODULES, problems, require

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

BLOCKER = '''
import sys


class Blocker:
    """Every import of lightgbm fails, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "lightgbm" or name.startswith("lightgbm."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)",
                                      name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''

USES_LIGHTGBM = '''
from extras import require

lgb = require("lightgbm")


def test_it_would_run():
    assert lgb.Booster
'''

MISSING_LINE = ("missing test extra: lightgbm (ferry[lightgbm]) cannot be imported "
                "(No module named 'lightgbm' (hidden by the test)); install it: pip install")


def _env(**strict: str) -> dict[str, str]:
    """This environment without CI or FERRY_REQUIRE_EXTRAS, plus ``strict``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "FERRY_REQUIRE_EXTRAS", "PYTEST_ADDOPTS")}
    return {**env, **strict}


def _pytest(args: list[str], env: dict[str, str], plugins: Path,
            cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` as ``make test`` runs it, with the blocker plugin loaded first."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(plugins), str(TESTS)])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "hide_lightgbm",
                           "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "hide_lightgbm.py").write_text(BLOCKER)
    return folder


@pytest.mark.parametrize("strict", [{"CI": "true"}, {"FERRY_REQUIRE_EXTRAS": "1"}],
                         ids=["CI=true", "make test"])
def test_a_strict_run_stops_at_session_start_naming_the_missing_extra(
        plugins: Path, strict: dict[str, str]) -> None:
    """The real tests/conftest.py, as ``make test`` (and so ``.ci/run``) runs it."""
    result = _pytest(["-q", "tests/unit/test_secrets_check.py"], _env(**strict), plugins, ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert MISSING_LINE in output, output
    assert "passed" not in output, output  # stopped before any test ran


def test_a_local_run_names_the_missing_extra_in_its_header_and_goes_on(plugins: Path) -> None:
    result = _pytest(["tests/unit/test_secrets_check.py"], _env(), plugins, ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert MISSING_LINE in output and "this run is not strict" in output, output
    assert "2 passed" in output, output


@pytest.mark.parametrize(("strict", "expected"), [
    ({"CI": "true"}, MISSING_LINE),
    # Not strict, yet lightgbm's distribution is installed: a broken install, not a skip.
    ({}, "lightgbm is installed (lightgbm) but does not import: No module named 'lightgbm'"),
], ids=["CI=true", "local"])
def test_a_test_module_that_requires_a_hidden_module_fails_to_collect(
        tmp_path: Path, plugins: Path, strict: dict[str, str], expected: str) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_uses_lightgbm.py").write_text(USES_LIGHTGBM)
    (suite / "pytest.ini").write_text("[pytest]\n")
    result = _pytest(["-q", "-rs", str(suite)], _env(**strict), plugins, suite)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.INTERRUPTED, output  # a collection error
    assert expected in output, output
    assert "skipped" not in output, output


def test_a_module_that_is_truly_not_installed_skips_locally_and_fails_in_ci(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODULES, "ferry_no_such_module", "xgboost")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FERRY_REQUIRE_EXTRAS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"ferry_no_such_module is not installed: "
                       r"ferry\[xgboost\] is not part of this install"):
        require("ferry_no_such_module")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"missing test extra: ferry_no_such_module "
                       r"\(ferry\[xgboost\]\) cannot be imported"):
        require("ferry_no_such_module")


def test_a_module_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="add it to tests/extras.py MODULES"):
        require("json")


def test_a_distribution_of_the_test_install_that_is_missing_is_named(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "ferry"\n[project.optional-dependencies]\n'
                         'extra = ["ferry-no-such-dist>=1,<2", "pytest>=8"]\n'
                         'all = ["ferry[extra]"]\ndev = []\n')
    assert problems(pyproject) == [
        "missing test extra: ferry-no-such-dist (ferry[extra]: ferry-no-such-dist<2,>=1) is not "
        f"installed; install it: {extras.INSTALL}"]


def test_each_required_module_comes_from_the_extra_the_table_names() -> None:
    """MODULES agrees with pyproject.toml: the module's distribution is in that extra."""
    pyproject = ROOT / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    provided = importlib.metadata.packages_distributions()
    for module, extra in MODULES.items():
        assert extra in declared, (f"tests/extras.py MODULES: {module!r} comes from extra "
                                   f"{extra!r}, which pyproject.toml does not declare")
        named = {canonicalize_name(requirement.name)
                 for e, requirement in extras.requirements(pyproject, (extra,)) if e == extra}
        installed = {canonicalize_name(name) for name in provided.get(module, [])}
        assert installed & named, (f"{module!r} is installed by {sorted(installed)}, none of "
                                   f"which ferry[{extra}] names ({sorted(named)})")
