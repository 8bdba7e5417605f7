"""The run-wide check that no secret a test made reached a log (tests/secrets_used.py)."""

from __future__ import annotations

from pathlib import Path

from secrets_used import leaks, log_files, remember


def test_a_secret_in_a_server_log_or_audit_log_is_found(tmp_path: Path) -> None:
    secret = "fk_0123abcd_" + "S" * 43
    (tmp_path / "serve-1.log").write_text("INFO request refused\n")
    (tmp_path / "audit.jsonl").write_text(f'{{"reason": "bad key {secret}"}}\n')
    (tmp_path / "notes.txt").write_text(secret)  # not a log: not read
    found = leaks([secret], log_files(tmp_path))
    assert found == [(str(tmp_path / "audit.jsonl"), "fk_012...")]
    assert leaks([secret], [("records", "nothing secret here")]) == []


def test_short_values_are_not_remembered_as_secrets() -> None:
    from secrets_used import SECRETS

    before = set(SECRETS)
    remember("short", b"  ")
    assert before == SECRETS
