"""The uvicorn check of `ferry serve`: passes on the installed uvicorn, one clear line otherwise."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import uvicorn.server

from ferry.errors import ConfigError
from ferry.protocols.rest import uvicorn_seam
from ferry.protocols.rest.uvicorn_seam import TESTED_PIN, TESTED_RANGE, check_uvicorn

_ROOT = Path(__file__).resolve().parents[4]


def test_the_installed_uvicorn_passes() -> None:
    check_uvicorn()


def test_pyproject_and_constraints_say_the_tested_range() -> None:
    project = tomllib.loads((_ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    for extra in ("serve", "test"):
        assert f"uvicorn{TESTED_RANGE}" in extras[extra], extra
    constraints = (_ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(rf"^uvicorn=={re.escape(TESTED_PIN)}$", constraints, re.MULTILINE)


@pytest.mark.parametrize("version", ["0.53.1", "0.55.0", "0.55.0rc1", "1.0.0", "0.30.0", "dev"])
def test_a_version_outside_the_range_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    def fake_installed_version() -> str:
        return version

    monkeypatch.setattr(uvicorn_seam, "_installed_version", fake_installed_version)
    with pytest.raises(ConfigError) as caught:
        check_uvicorn()
    message = caught.value.message
    assert "\n" not in message and caught.value.hint is None
    assert f"uvicorn {version} is installed" in message
    assert f"uvicorn{TESTED_RANGE}" in message
    assert message.endswith(f"pip install 'uvicorn=={TESTED_PIN}'")


@pytest.mark.parametrize("version", ["0.54.0", "0.54.7", "0.54.1.post1"])
def test_versions_of_the_tested_series_pass(monkeypatch: pytest.MonkeyPatch,
                                            version: str) -> None:
    def fake_installed_version() -> str:
        return version

    monkeypatch.setattr(uvicorn_seam, "_installed_version", fake_installed_version)
    check_uvicorn()


def test_a_missing_uvicorn_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_installed_version() -> str:
        raise importlib.metadata.PackageNotFoundError("uvicorn")

    monkeypatch.setattr(uvicorn_seam, "_installed_version", fake_installed_version)
    with pytest.raises(ConfigError, match="uvicorn is not installed"):
        check_uvicorn()


def test_a_missing_server_state_attribute_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeServerStateWithoutTasks:
        def __init__(self) -> None:
            self.total_requests = 0
            self.connections: set[object] = set()
            self.default_headers: list[tuple[bytes, bytes]] = []

    monkeypatch.setattr(uvicorn.server, "ServerState", FakeServerStateWithoutTasks)
    with pytest.raises(ConfigError) as caught:
        check_uvicorn()
    message = caught.value.message
    assert "\n" not in message
    assert f"uvicorn {importlib.metadata.version('uvicorn')} lacks ServerState.tasks," in message
    assert message.endswith(f"pip install 'uvicorn=={TESTED_PIN}'")


def test_a_missing_config_attribute_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    original_load = uvicorn.Config.load

    def fake_load_that_forgets_loaded_app(self: uvicorn.Config) -> None:
        original_load(self)
        del self.loaded_app

    monkeypatch.setattr(uvicorn.Config, "load", fake_load_that_forgets_loaded_app)
    with pytest.raises(ConfigError, match=r"lacks Config\.loaded_app, which ferry's HTTP/1\.1"):
        check_uvicorn()
