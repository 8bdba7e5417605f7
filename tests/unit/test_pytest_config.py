"""The suite's own pytest settings: every test has a timeout, and a timed-out test fails alone.

The subprocess runs take ferry's settings (``-c pyproject.toml``) over a small suite written
to a temporary folder: a test that hangs, with a fixture standing in for a server, and a test
after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HANGING_SUITE = '''
import asyncio
import pathlib
import time

import pytest

MARKS = pathlib.Path(__file__).with_name("marks")


@pytest.fixture
def server():
    MARKS.joinpath("started").touch()
    yield
    MARKS.joinpath("stopped").touch()  # a real fixture stops its server here


@pytest.mark.timeout(1)
def test_hangs_in_a_blocking_call(server):
    time.sleep(120)


@pytest.mark.timeout(1)
async def test_hangs_on_the_event_loop():
    await asyncio.sleep(120)


def test_after_them_runs():
    MARKS.joinpath("after").touch()
'''


def test_every_test_has_a_default_timeout_by_signal(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 300
    assert pytestconfig.getini("timeout_method") == "signal"


def test_a_test_past_its_timeout_fails_alone_and_its_fixtures_are_torn_down(
        tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    (suite / "marks").mkdir(parents=True)
    (suite / "test_hanging.py").write_text(HANGING_SUITE)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(suite), "-p", "no:cacheprovider", "-q", str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=100)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "2 failed, 1 passed" in output, output
    # The two that failed are the hanging ones, and for their timeout (how often the message
    # is quoted depends on the traceback style and terminal width, e.g. under CI=true).
    failed = sorted(line.split("::")[1].split(" ")[0] for line in output.splitlines()
                    if line.startswith("FAILED "))
    assert failed == ["test_hangs_in_a_blocking_call", "test_hangs_on_the_event_loop"], output
    assert output.count("Failed: Timeout (>1.0s) from pytest-timeout") >= 2, output
    marks = sorted(p.name for p in (suite / "marks").iterdir())
    assert marks == ["after", "started", "stopped"], output


def test_hypothesis_keeps_its_caches_outside_the_checkout() -> None:
    """schemathesis runs Hypothesis, whose caches would go to ./.hypothesis (tests/conftest.py)."""
    from hypothesis.configuration import storage_directory

    where = storage_directory("constants", intent_to_write=False).path.resolve()
    assert not where.is_relative_to(ROOT), where
