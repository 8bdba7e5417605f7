"""Issue 16 item 1: the limit settings ([rate_limit], elements, connections) and their policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.call import CallContext
from ferry.errors import ConfigError, RateLimitedError
from ferry.limits import RateLimit
from ferry.policy import Action, Kind
from ferry.server import security_policies
from ferry.settings import SecuritySettings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("FERRY_")]:
        monkeypatch.delenv(key)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ferry.toml"
    path.write_text(text)
    return path


def test_limits_have_safe_defaults_and_the_rate_limit_is_off():
    settings = load_settings()
    assert not settings.rate_limit.enabled
    assert settings.max_request_elements == 1 << 24
    assert (settings.http_max_connections, settings.http_keep_alive,
            settings.http_head_timeout, settings.grpc_handshake_timeout) == (4096, 30.0,
                                                                             10.0, 10.0)
    policies, _ = security_policies(settings.security, rate_limit=settings.rate_limit)
    assert policies == []


def test_rate_limit_from_the_file_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_RATE_LIMIT__BURST", "3")
    settings = load_settings(_toml(tmp_path, """
[rate_limit]
rate = 2.5
calls = "all"
[rate_limit.principals."key:batch"]
rate = 1000.0
"""))
    limit = settings.rate_limit
    assert (limit.rate, limit.burst, limit.calls) == (2.5, 3, "all")
    assert limit.principals["key:batch"].bucket == 1000  # one second's worth by default
    policies, _ = security_policies(SecuritySettings(), rate_limit=limit)
    (policy,) = policies
    assert isinstance(policy, RateLimit)
    call = CallContext("rid", "grpc", "grpc", peer="ipv4:10.0.0.1:4000")
    for _ in range(3):
        policy.check(call, Action(Kind.MODEL_METADATA, "m"))  # calls = "all"
    with pytest.raises(RateLimitedError):
        policy.check(call, Action(Kind.INFER, "m"))
    batch = CallContext("rid", "rest", "asgi", peer="10.0.0.1:4000")
    batch.principal = "key:batch"
    for _ in range(1000):
        policy.check(batch, Action(Kind.INFER, "m"))


@pytest.mark.parametrize(("text", "message"), [
    ("[rate_limit]\nrate = 0\n", "rate_limit.rate = 0: Input should be greater than 0"),
    ("[rate_limit]\nburst = 5\n", "burst and principals need a rate"),
    ("[rate_limit]\nrate = 1.0\ncalls = 'some'\n", "rate_limit.calls = 'some'"),
    ("max_request_elements = 0\n", "max_request_elements = 0"),
    ("http_keep_alive = 0\n", "http_keep_alive = 0"),
    ("http_max_connections = 0\n", "http_max_connections = 0"),
], ids=["zero-rate", "burst-without-rate", "bad-calls", "zero-elements", "zero-keep-alive",
        "zero-connections"])
def test_a_bad_limit_is_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(_toml(tmp_path, text))
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_every_rate_limit_key_has_a_row_in_docs_serving():
    from ferry.settings import RateLimitSettings, RateRule

    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    table = doc[doc.index("| key (`[rate_limit]`"):]
    rows = table[:table.index("\n\n")]
    missing = [name for cls in (RateLimitSettings, RateRule) for name in cls.model_fields
               if f"| `{name}` |" not in rows]
    assert missing == []
