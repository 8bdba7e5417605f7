"""Shared fixtures. Tests are marked by folder: unit, integration, e2e (``-m unit``)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

import extras
import secrets_used
from ferry.repository import Repository

# TensorFlow is quiet and deterministic in tests; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Hypothesis (schemathesis' engine) keeps its caches in ./.hypothesis, the checkout's root,
# unless told otherwise: tests write nothing there.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      str(Path(tempfile.gettempdir()) / "ferry-tests-hypothesis"))

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        part = Path(str(item.fspath)).relative_to(_TESTS).parts[0]
        if part in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, part))


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """An empty model repository in a temporary directory."""
    return Repository(tmp_path / "repo")


class _Everything(logging.Handler):
    """Keeps every log record the run emits, as text (for the secrets check below)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.getMessage()} {record.__dict__}")
        except Exception:  # a record that cannot be formatted is not this check's business
            self.lines.append(str(record.msg))


_EVERYTHING = _Everything()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI or ``make test``, stop at once if an extra of the test install is missing
    (tests/extras.py); one line names each."""
    missing = extras.problems()
    if missing and extras.strict():
        pytest.exit("\n".join(missing), returncode=pytest.ExitCode.TESTS_FAILED)
    logging.getLogger().addHandler(_EVERYTHING)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say in the header whether the whole test install is there (a local run may skip)."""
    missing = extras.problems()
    if not missing:
        return [f"extras: every distribution of .[{','.join(extras.TEST_EXTRAS)}] is installed"]
    if extras.strict():
        return [*missing, "(a strict run, CI or make test: it stops before any test)"]
    return [*missing, "(this run is not strict: tests that need a module that is not "
                      "installed are skipped)"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a secret a test made appears in any log (see tests/secrets_used.py)."""
    logging.getLogger().removeHandler(_EVERYTHING)
    if not secrets_used.SECRETS:
        return
    texts = [("in-process log records", "\n".join(_EVERYTHING.lines))]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        texts.extend(secrets_used.log_files(factory.getbasetemp()))
    found = secrets_used.leaks(secrets_used.SECRETS, texts)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        if reporter is not None:
            for where, secret in found:
                reporter.write_line(f"SECRET IN A LOG: {secret} in {where}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"secrets check: {len(secrets_used.SECRETS)} secrets made by the "
                            f"tests, none in {len(texts)} logs")
