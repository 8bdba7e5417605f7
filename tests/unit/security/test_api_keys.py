"""API keys: shown once, stored as hashes, written atomically, revoked without restart."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading

import pytest

from ferry.errors import ConfigError, InputError, NotFoundError
from ferry.security.api_keys import FILE_FORMAT, KeyStore, parse_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path):
    return tmp_path / "keys" / "ferry-keys.json"


def test_add_returns_a_key_only_its_hash_is_stored(path):
    store = KeyStore(path)
    key = store.add("ci", ["infer:digits*", "read:*"])
    key_id, secret = parse_key(key)
    assert key == f"fk_{key_id}_{secret}" and len(secret) == 43

    raw = path.read_bytes()
    assert key.encode() not in raw and secret.encode() not in raw
    doc = json.loads(raw)
    assert doc["format"] == FILE_FORMAT
    (entry,) = doc["keys"]
    assert entry["id"] == key_id and entry["name"] == "ci"
    assert entry["grants"] == ["infer:digits*", "read:*"]
    assert entry["sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert set(entry) == {"id", "name", "grants", "created", "sha256"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # No temporary file is left behind by the atomic write.
    assert sorted(p.name for p in path.parent.iterdir()) == ["ferry-keys.json",
                                                             "ferry-keys.json.lock"]


def test_verify(path):
    store = KeyStore(path)
    key = store.add("ci", ["infer:*"])
    record = KeyStore(path).verify(key)
    assert record is not None and record.name == "ci" and record.grants == (("infer", "*"),)
    assert "sha256" not in repr(record)
    key_id, secret = parse_key(key)
    wrong = f"fk_{key_id}_{'A' * 43}"
    fresh = KeyStore(path)
    assert fresh.verify(wrong) is None
    assert fresh.verify(f"fk_00000000_{secret}") is None
    for malformed in ("", "fk_", "fk_xyz_abc", key + "x", key[:-1], "eyJhbGciOi.x.y"):
        assert fresh.verify(malformed) is None


def test_list_and_revoke_by_name_or_id(path):
    store = KeyStore(path)
    store.add("a", ["read:*"])
    key_b = store.add("b", ["infer:x"])
    assert [r.name for r in store.list()] == ["a", "b"]
    assert store.revoke("a").name == "a"
    b_id = parse_key(key_b)[0]
    assert store.revoke(b_id).name == "b"
    assert store.list() == ()
    with pytest.raises(NotFoundError, match="no API key with id or name 'nope'"):
        store.revoke("nope")


@pytest.mark.parametrize(("name", "grants", "phrase"), [
    ("bad name", ["read:*"], "invalid key name"),
    ("", ["read:*"], "invalid key name"),
    ("deadbeef", ["read:*"], "looks like a key id"),
    ("ci", [], "at least one grant"),
    ("ci", ["wizard:*"], "unknown role"),
])
def test_add_refuses_bad_input(path, name, grants, phrase):
    with pytest.raises(InputError, match=phrase):
        KeyStore(path).add(name, grants)
    assert not path.exists()


def test_add_refuses_a_taken_name(path):
    store = KeyStore(path)
    store.add("ci", ["read:*"])
    with pytest.raises(InputError, match="exists already"):
        store.add("ci", ["read:*"])


def test_revocation_is_seen_without_restart_within_the_reload_interval(path):
    clock = FakeClock()
    server = KeyStore(path, clock=clock)  # the file does not exist yet: no key accepted
    key = KeyStore(path).add("ci", ["infer:*"])
    assert server.verify(key) is None  # not looked at again before the interval
    clock.now += 1.0
    assert server.verify(key) is not None
    generation = server.generation
    assert generation == 1

    KeyStore(path).revoke("ci")  # another process: the CLI
    clock.now += 0.5
    assert server.verify(key) is not None  # the documented window
    assert server.refresh() == generation
    clock.now += 0.5
    assert server.verify(key) is None
    assert server.generation == generation + 1


def test_the_hot_path_makes_no_syscall_between_looks(path, monkeypatch):
    clock = FakeClock()
    key = KeyStore(path).add("ci", ["infer:*"])
    server = KeyStore(path, clock=clock)
    calls = []
    real_stat = os.stat
    monkeypatch.setattr("ferry.security.api_keys.os.stat",
                        lambda *a, **k: calls.append(a) or real_stat(*a, **k))
    for _ in range(100):
        assert server.verify(key) is not None
    assert calls == []
    clock.now += 1.0
    server.verify(key)
    assert len(calls) == 1


def test_an_invalid_file_is_a_config_error_at_start_and_fails_closed_on_reload(path, caplog):
    clock = FakeClock()
    key = KeyStore(path).add("ci", ["infer:*"])
    server = KeyStore(path, clock=clock)
    digest = json.loads(path.read_text())["keys"][0]["sha256"]
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is invalid"):
        KeyStore(path)
    clock.now += 1.0
    assert server.verify(key) is None
    assert "invalid" in caplog.text
    assert digest not in caplog.text and key not in caplog.text


@pytest.mark.parametrize("doc", [
    [], {"format": "other"}, {"format": FILE_FORMAT, "keys": [{"id": "x"}]},
    {"format": FILE_FORMAT, "keys": [{"id": "0123abcd", "name": "a", "grants": ["read:*"],
                                      "created": "2025-01-01T00:00:00+00:00", "sha256": "00"}]},
])
def test_bad_files_are_refused(path, doc):
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError):
        KeyStore(path)


def test_concurrent_adds_lose_nothing(path):
    errors = []

    def add(i):
        try:
            KeyStore(path).add(f"k{i}", ["read:*"])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.name for r in KeyStore(path).list()) == [f"k{i}" for i in range(8)]


def test_a_store_sees_its_own_additions_and_revocations_at_once(tmp_path):
    store = KeyStore(tmp_path / "keys.json")  # the file does not exist yet
    key = store.add("ci", ["infer:*"])
    assert store.verify(key) is not None
    store.revoke("ci")
    assert store.verify(key) is None
