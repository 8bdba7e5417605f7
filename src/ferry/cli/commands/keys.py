"""``ferry keys add|list|revoke``: manage the API keys a server accepts.

The keys file holds hashes only (:mod:`ferry.security.api_keys`); ``add`` prints the new key
once, on stdout (so ``KEY=$(ferry keys add ci -g infer:*)`` works), and says on stderr what it
did. A running server sees an added or revoked key within a second, without a restart.

The file is ``--keys-file``, else ``FERRY_SECURITY__API_KEYS_FILE`` (the variable that sets
the server's ``[security] api_keys_file``), else ``ferry-keys.json`` in the current
directory. With ``--audit-log`` (or ``FERRY_SECURITY__AUDIT_LOG``) each change is also
written to the audit log: the key's id and name, never the key.

ferry.security is imported inside the commands, so ``ferry --help`` does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ferry.cli.app import app
from ferry.cli.console import err_console, out_console, print_json

__all__ = ["keys_app"]

keys_app = typer.Typer(
    name="keys",
    help="Manage API keys: add (shown once), list, revoke (servers see it within 1 s).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

KeysFile = Annotated[Path, typer.Option(
    "--keys-file", envvar="FERRY_SECURITY__API_KEYS_FILE", show_default=True,
    help="The API keys file the server reads ([security] api_keys_file).",
)]
AuditLogPath = Annotated[str | None, typer.Option(
    "--audit-log", envvar="FERRY_SECURITY__AUDIT_LOG",
    help="Also record the change in this audit log ('-': stderr).",
)]
DEFAULT_KEYS_FILE = Path("ferry-keys.json")


@keys_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    grants: Annotated[list[str], typer.Option(
        "--grant", "-g", metavar="ROLE:PATTERN",
        help="What the key may do, e.g. infer:digits* or read:* (roles: read, infer, admin); "
             "repeat for several.",
    )],
    keys_file: KeysFile = DEFAULT_KEYS_FILE,
    audit_log: AuditLogPath = None,
) -> None:
    """Create an API key and print it, once: ferry keeps only its hash.

    Example: [bold]ferry keys add ci --grant 'infer:digits*' --grant 'read:*'[/]
    """
    from ferry.security.api_keys import KeyStore, parse_key

    store = KeyStore(keys_file)
    key = store.add(name, grants)
    parts = parse_key(key)
    assert parts is not None
    shown = ", ".join(grants)
    err_console.print(f"added API key {escape(name)!r} (id {parts[0]}) to {escape(str(keys_file))}"
                      f" with grants {escape(shown)}", highlight=False)
    out_console.print(key, markup=False, highlight=False)
    err_console.print("[bold yellow]this key is shown only now[/]: store it safely (ferry keeps "
                      "only its hash); lost keys are revoked and replaced, not recovered",
                      highlight=False)
    _audit(audit_log, "add", parts[0], name)


@keys_app.command("list")
def list_keys(
    keys_file: KeysFile = DEFAULT_KEYS_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the API keys: id, name, grants, creation time (never the keys or hashes).

    Example: [bold]ferry keys list[/]
    """
    from ferry.security.api_keys import KeyStore
    from ferry.security.grants import format_grant

    rows: list[dict[str, Any]] = [
        {"id": record.id, "name": record.name,
         "grants": [format_grant(grant) for grant in record.grants],
         "created": record.created.isoformat()}
        for record in KeyStore(keys_file).list()
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        err_console.print(f"no API keys in {escape(str(keys_file))}; add one with: "
                          "ferry keys add NAME --grant infer:*", highlight=False)
        return
    table = Table("id", "name", "grants", "created (UTC)")
    for row in rows:
        table.add_row(row["id"], escape(row["name"]), escape(" ".join(row["grants"])),
                      row["created"])
    out_console.print(table)


@keys_app.command("revoke")
def revoke(
    name_or_id: Annotated[str, typer.Argument(metavar="NAME_OR_ID",
                                              help="The key's id or name.")],
    keys_file: KeysFile = DEFAULT_KEYS_FILE,
    audit_log: AuditLogPath = None,
) -> None:
    """Revoke an API key: running servers refuse it within a second.

    Example: [bold]ferry keys revoke ci[/]
    """
    from ferry.security.api_keys import KeyStore

    record = KeyStore(keys_file).revoke(name_or_id)
    err_console.print(f"revoked API key {escape(record.name)!r} (id {record.id}) in "
                      f"{escape(str(keys_file))}; servers reading it refuse the key within 1 s",
                      highlight=False)
    _audit(audit_log, "revoke", record.id, record.name)


def _audit(target: str | None, action: str, key_id: str, name: str) -> None:
    if target is None:
        return
    from ferry.security.audit import audit_key_change

    audit_key_change(target, action, key_id, name)
