"""AuditLog: JSON lines with who, where and what; never a credential."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ferry.call import CallContext, internal_call
from ferry.policy import Action, Kind
from ferry.security.audit import Audit, AuditLog, audit_key_change

SECRET = "fk_live_0123456789abcdef"


def _call() -> CallContext:
    call = CallContext("rid-7", "grpc", "grpc", peer="ipv4:10.0.0.7:5000",
                       credentials=f"Bearer {SECRET}")
    call.principal = "ci-deployer"
    return call


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_line_has_every_field(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log("auth_failure", _call(), reason="unknown key")
    log.close()
    [line] = _lines(tmp_path / "audit.jsonl")
    assert str(line.pop("time")).endswith("Z")
    assert line == {"event": "auth_failure", "principal": "ci-deployer",
                    "peer": "ipv4:10.0.0.7:5000", "request_id": "rid-7", "protocol": "grpc",
                    "door": "grpc", "model": None, "outcome": "refused",
                    "reason": "unknown key"}


def test_the_file_is_appended_to_and_private(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "before"}\n')
    path.chmod(0o600)
    for _ in range(2):
        log = AuditLog(path)
        log.record("load", _call(), model="mlp")
        log.close()
    assert [line["event"] for line in _lines(path)] == ["before", "load", "load"]
    fresh = tmp_path / "fresh.jsonl"
    AuditLog(fresh).close()
    assert fresh.stat().st_mode & 0o777 == 0o600


def test_credentials_never_reach_a_line_even_when_a_caller_passes_them(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    call = _call()
    log.record("auth_failure", call, reason=f"key {SECRET} revoked",
               credentials=call.credentials, token=SECRET, key=SECRET,
               detail=f"Bearer {SECRET}")
    log.close()
    text = path.read_text()
    assert SECRET not in text
    assert SECRET not in caplog.text
    [line] = _lines(path)
    assert line["reason"] == "key <redacted> revoked"
    assert line["detail"] == "<redacted>"
    assert not {"credentials", "token", "key"} & set(line)


def test_client_strings_are_cut(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.record("permission_denied", _call(), model="m" * 10_000)
    log.close()
    [line] = _lines(tmp_path / "a.jsonl")
    assert str(line["model"]).endswith("...(9800 more)")


def test_dash_is_stderr(capsys):
    log = AuditLog("-")
    log.record("unload", _call(), model="mlp")
    log.close()
    assert json.loads(capsys.readouterr().err)["event"] == "unload"


def test_the_policy_records_loads_and_unloads_only():
    stream = io.StringIO()
    policy = Audit(AuditLog(stream))
    call = _call()
    for kind in Kind:
        policy.check(call, Action(kind, "mlp" if kind not in (Kind.LIVE, Kind.READY) else None))
    policy.check(internal_call("sighup-reload"), Action(Kind.LOAD, "mlp"))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x["principal"], x["outcome"], x["model"]) for x in lines] == [
        ("load", "ci-deployer", "allowed", "mlp"), ("unload", "ci-deployer", "allowed", "mlp"),
        ("load", "ferry", "allowed", "mlp")]
    assert lines[2]["protocol"] == "internal"


def test_key_changes_name_the_key_never_the_secret(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit_key_change(str(path), "add", "k_12ab", "ci-deployer")
    audit_key_change(path, "revoke", "k_12ab", "ci-deployer")
    audit_key_change(None, "add", "k_x", "nobody")  # no audit log configured: nothing
    lines = _lines(path)
    assert [(x["event"], x["action"], x["key_id"], x["name"]) for x in lines] == [
        ("key_change", "add", "k_12ab", "ci-deployer"),
        ("key_change", "revoke", "k_12ab", "ci-deployer")]
    assert all(x["principal"] and str(x["request_id"]).startswith("cli-") for x in lines)


_APPEND = """
import sys
from ferry.security.audit import AuditLog
log = AuditLog(sys.argv[1])
for i in range(300):
    log.record("unload", None, model=f"model-{i}", reason="x" * 150)
log.close()
"""


@pytest.mark.timeout(60)
def test_processes_sharing_the_file_never_interleave_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _APPEND, str(path)]) for _ in range(2)]
    assert [proc.wait(50) for proc in procs] == [0, 0]
    assert len(_lines(path)) == 600  # every line parses: none was cut by another
