"""``ferry keys add|list|revoke`` in-process: the key printed once, hashes on disk, audit lines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ferry.cli import main
from ferry.security.api_keys import KeyStore, parse_key


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def keys_file(tmp_path):
    return tmp_path / "keys.json"


def test_add_prints_the_key_once_and_stores_its_hash(capsys, keys_file, tmp_path):
    audit_log = tmp_path / "audit.log"
    code, out, err = run(capsys, "keys", "add", "ci", "--grant", "infer:digits*", "-g", "read:*",
                         "--keys-file", str(keys_file), "--audit-log", str(audit_log))
    assert code == 0, err
    key = out.strip()
    key_id, _ = parse_key(key)
    assert f"added API key 'ci' (id {key_id})" in err and "infer:digits*, read:*" in err
    assert "shown only now" in err and key not in err
    assert key.encode() not in keys_file.read_bytes()
    assert KeyStore(keys_file).verify(key).name == "ci"
    line = json.loads(audit_log.read_text())
    assert line["event"] == "key_change" and line["action"] == "add"
    assert line["key_id"] == key_id and key not in audit_log.read_text()

    code, out, _ = run(capsys, "keys", "list", "--keys-file", str(keys_file), "--json")
    (row,) = json.loads(out)
    assert row["id"] == key_id and row["grants"] == ["infer:digits*", "read:*"]
    assert "sha256" not in row and key not in out
    code, out, _ = run(capsys, "keys", "list", "--keys-file", str(keys_file))
    assert code == 0 and key_id in out and "ci" in out

    code, _, err = run(capsys, "keys", "revoke", key_id, "--keys-file", str(keys_file),
                       "--audit-log", str(audit_log))
    assert code == 0 and f"revoked API key 'ci' (id {key_id})" in err
    assert KeyStore(keys_file).verify(key) is None
    assert json.loads(audit_log.read_text().splitlines()[1])["action"] == "revoke"


def test_the_keys_file_comes_from_the_environment(capsys, keys_file, monkeypatch):
    monkeypatch.setenv("FERRY_SECURITY__API_KEYS_FILE", str(keys_file))
    code, out, err = run(capsys, "keys", "add", "bot", "-g", "read:*")
    assert code == 0, err
    assert KeyStore(keys_file).verify(out.strip()) is not None


def test_the_default_keys_file_is_in_the_current_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FERRY_SECURITY__API_KEYS_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(capsys, "keys", "add", "bot", "-g", "read:*")
    assert code == 0 and (tmp_path / "ferry-keys.json").exists()


def test_errors_are_one_line_with_status_2(capsys, keys_file):
    code, _, err = run(capsys, "keys", "add", "ci", "-g", "wizard:*", "--keys-file", str(keys_file))
    assert code == 2 and "unknown role 'wizard'" in err
    code, _, err = run(capsys, "keys", "revoke", "nobody", "--keys-file", str(keys_file))
    assert code == 2 and "no API key with id or name 'nobody'" in err
    code, _, err = run(capsys, "keys", "list", "--keys-file", str(keys_file))
    assert code == 0 and "no API keys" in err


@pytest.mark.parametrize("command", [[], ["add"], ["list"], ["revoke"]])
def test_help(capsys, command):
    code, out, _ = run(capsys, "keys", *command, "--help")
    assert code == 0 and "Usage" in out


def test_the_cli_starts_without_importing_security():
    code = ("import sys, ferry.cli; "
            "assert 'ferry.security' not in sys.modules and 'jwt' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
