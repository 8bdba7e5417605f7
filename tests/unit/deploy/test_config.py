"""ferry.deploy.config.render_toml: the ferry.toml a deployment ships (issue 20)."""

from __future__ import annotations

import tomllib

import pytest

from ferry.deploy.config import render_toml
from ferry.settings import load_settings


def test_what_is_written_reads_back_the_same():
    data = {"repository": "/models", "models": ["iris:1", "wine:2"], "workers": 2,
            "drain_timeout": 12.5, "watch": False, "default_model": None,
            "odd": 'quote " and \\ and \n newline and ü',
            "security": {"api_keys_file": "/etc/ferry/api-keys/keys.json",
                         "tls_client_grants": ["infer:*", "read:*"]},
            "rate_limit": {"rate": 5.0, "principals": {"key:ci": {"rate": 1.0}}},
            "inf": float("inf")}
    text = render_toml(data, header="two\nlines")
    assert text.startswith("# two\n# lines\n")
    back = tomllib.loads(text)
    assert back == {k: v for k, v in data.items() if v is not None}


def test_a_value_settings_never_hold_is_refused():
    with pytest.raises(TypeError, match="cannot write a bytes"):
        render_toml({"x": b"raw"})


def test_ferry_serve_reads_it(tmp_path):
    path = tmp_path / "ferry.toml"
    path.write_text(render_toml({"repository": "/models", "models": ["iris:1"], "host": "0.0.0.0",
                                 "model_defaults": {"max_queue": 7,
                                                    "batching": {"max_batch_size": 8}}}))
    settings = load_settings(path)
    assert settings.models == ["iris:1"] and settings.model_defaults.max_queue == 7
    assert settings.model_defaults.batching.max_batch_size == 8
