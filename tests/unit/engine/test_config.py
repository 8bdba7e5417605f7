"""Per-model config.toml: merged over the server's defaults, checked with one-line errors."""

from __future__ import annotations

import pytest

from ferry.engine import ModelConfig, read_model_config
from ferry.errors import ConfigError


def test_a_model_without_config_toml_gets_the_defaults(tmp_path):
    defaults = ModelConfig.model_validate({"max_queue": 9})
    assert read_model_config(tmp_path, defaults) is defaults


def test_the_file_overrides_the_defaults_key_by_key(tmp_path):
    (tmp_path / "config.toml").write_text(
        'instances = 2\n[batching]\nmax_queue_delay_ms = 1.5\n')
    defaults = ModelConfig.model_validate({"max_queue": 9, "batching": {"max_batch_size": 8}})
    config = read_model_config(tmp_path, defaults)
    assert (config.instances, config.max_queue) == (2, 9)
    assert (config.batching.max_batch_size, config.batching.max_queue_delay_ms) == (8, 1.5)


@pytest.mark.parametrize(("text", "message"), [
    ("instances = 0\n", "instances = 0: Input should be greater than or equal to 1"),
    ("version_policy = 'newest'\n", "version_policy = 'newest'"),
    ("[batching]\nmax_batch_sise = 4\n", "unknown setting 'batching.max_batch_sise'"),
    ("instances = \n", "not valid TOML"),
], ids=["instances", "policy", "typo", "toml"])
def test_a_bad_file_is_named_with_key_and_rule(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_model_config(tmp_path)
    assert str(tmp_path / "config.toml") in caught.value.message
    assert message in caught.value.message


@pytest.mark.parametrize(("policy", "versions", "chosen"), [
    ("latest", [1, 2, 3], [3]),
    ("latest:2", [1, 2, 3], [2, 3]),
    ("all", [1, 2, 3], [1, 2, 3]),
    ("1,3", [1, 2, 3], [1, 3]),
])
def test_the_version_policy_picks_versions(policy, versions, chosen):
    assert ModelConfig.model_validate({"version_policy": policy}).policy.select(versions) == chosen


def test_a_breaker_and_a_fallback_are_read_from_config_toml(tmp_path):
    (tmp_path / "config.toml").write_text(
        'fallback = 1\n[breaker]\nfailures = 3\nlatency_ms = 250\ncooldown_s = 2\n')
    config = read_model_config(tmp_path)
    assert config.fallback == "1"
    assert config.breaker is not None
    assert (config.breaker.failures, config.breaker.latency_ms, config.breaker.cooldown_s,
            config.breaker.window_s, config.breaker.half_open_calls) == (3, 250.0, 2.0, 10.0, 1)
    assert ModelConfig().breaker is None and ModelConfig().fallback is None
    for text in ("previous", "other", "other:3"):
        assert ModelConfig.model_validate({"fallback": text}).fallback == text


@pytest.mark.parametrize(("text", "message"), [
    ("fallback = 'other:x'\n", "fallback = 'other:x'"),
    ("fallback = 'a/b:1'\n", "expected 'previous', a version number or 'model:version'"),
    ("fallback = 0\n", "fallback = 0: a fallback version number is 1 or more"),
    ("[breaker]\nfailures = 0\n", "breaker.failures = 0"),
    ("[breaker]\ncooldown_s = 0\n", "breaker.cooldown_s = 0"),
    ("[breaker]\nfailure = 3\n", "unknown setting 'breaker.failure'"),
], ids=["word", "bad-name", "zero", "failures", "cooldown", "typo"])
def test_a_bad_breaker_or_fallback_is_named(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_model_config(tmp_path)
    assert message in caught.value.message
