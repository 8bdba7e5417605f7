"""Server settings: precedence (flag > FERRY_* > ferry.toml > default) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.errors import ConfigError
from ferry.settings import ServerSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("FERRY_")]:
        monkeypatch.delenv(key)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ferry.toml"
    path.write_text(text)
    return path


def test_defaults_serve_locally_on_8000_and_8001():
    settings = load_settings()
    assert (settings.host, settings.http_port, settings.grpc_port) == ("127.0.0.1", 8000, 8001)
    assert settings.workers == 1 and settings.models == [] and not settings.watch
    assert settings.model_defaults.max_queue == 256


def test_flag_beats_environment_beats_file_beats_default(tmp_path, monkeypatch):
    config = _toml(tmp_path, 'http_port = 9001\ngrpc_port = 9002\nworkers = 3\n'
                             'models = ["a", "b:2"]\n')
    monkeypatch.setenv("FERRY_GRPC_PORT", "9102")
    monkeypatch.setenv("FERRY_WORKERS", "4")
    settings = load_settings(config, workers=5, host=None)
    assert settings.http_port == 9001  # file
    assert settings.grpc_port == 9102  # environment over file
    assert settings.workers == 5  # flag over environment
    assert settings.host == "127.0.0.1"  # a flag given as None is not given
    assert settings.models == ["a", "b:2"]


def test_models_from_a_comma_list_and_nested_model_defaults_from_the_environment(
        tmp_path, monkeypatch):
    config = _toml(tmp_path, "[model_defaults]\ninstances = 2\n"
                             "[model_defaults.batching]\nmax_batch_size = 16\n")
    monkeypatch.setenv("FERRY_MODELS", "digits, fraud:3")
    monkeypatch.setenv("FERRY_MODEL_DEFAULTS__MAX_QUEUE", "12")
    settings = load_settings(config)
    assert settings.models == ["digits", "fraud:3"]
    defaults = settings.model_defaults
    assert (defaults.instances, defaults.max_queue, defaults.batching.max_batch_size) == (
        2, 12, 16)


@pytest.mark.parametrize(("text", "env", "message"), [
    ("http_port = 70000\n", {}, "http_port = 70000: Input should be less than or equal to 65535"),
    ("htp_port = 80\n", {}, "unknown setting 'htp_port'"),
    ("http_port = \n", {}, "not valid TOML"),
    ("", {"FERRY_WORKERS": "0"}, "workers = '0': Input should be greater than or equal to 1"),
    ("", {"FERRY_LOG_FORMAT": "xml"}, "log_format = 'xml'"),
    ("[model_defaults]\nversion_policy = 'newest'\n", {}, "model_defaults.version_policy"),
    ("[model_defaults.batching]\npreferred_batch_sizes = [128]\n", {},
     "each must be between 1 and max_batch_size (64), got 128"),
], ids=["port-range", "unknown-key", "bad-toml", "env-workers", "env-log-format",
        "bad-policy", "preferred-above-max"])
def test_a_bad_setting_is_one_line_naming_key_and_rule(tmp_path, monkeypatch, text, env,
                                                        message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_toml(tmp_path, text))
    assert message in caught.value.message
    assert "\n" not in caught.value.message
    assert str(tmp_path / "ferry.toml") in caught.value.message


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"--config .*nope.toml: no such file"):
        load_settings(tmp_path / "nope.toml")


def test_the_grpc_limit_settings_default_to_the_servers_own_defaults():
    from ferry.protocols.grpc.server import GrpcLimits

    settings, limits = ServerSettings(), GrpcLimits()
    assert (settings.grpc_max_concurrent_streams, settings.grpc_max_concurrent_rpcs,
            settings.grpc_max_connection_idle) == (
        limits.max_concurrent_streams, limits.max_concurrent_rpcs, limits.max_connection_idle)
