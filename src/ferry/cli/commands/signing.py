"""``ferry signing-key new|public``, ``ferry sign``, ``ferry verify``: signed model versions.

A signature (Ed25519, :mod:`ferry.repository.signing`) over a version's manifest, which
holds the sha256 of every file, travels with the version directory as ``manifest.sig``: a
server started with ``--trusted-keys FILE`` serves only versions signed by a key listed
there. The private key stays with whoever publishes models; servers get the public line.

``FERRY_SIGNING_KEY_PASSPHRASE``, when set, encrypts new keys and decrypts keys that are
read; it is never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ferry.cli.app import app, state
from ferry.cli.console import err_console, out_console, print_json
from ferry.repository import ModelRef, Repository, SigningKey, TrustedKeys

__all__ = ["signing_key_app"]

PASSPHRASE_ENV = "FERRY_SIGNING_KEY_PASSPHRASE"

signing_key_app = typer.Typer(
    name="signing-key",
    help="Make an Ed25519 key to sign model versions with (ferry sign), or print its "
         "public line for a trusted keys file.",
    no_args_is_help=True,
)
app.add_typer(signing_key_app, name="signing-key")

KeyPath = Annotated[Path, typer.Argument(metavar="KEY", help="The private key file (PEM).")]
RepositoryPath = Annotated[Path | None, typer.Option(
    "--repository", "--repo", "-r", show_default=False,
    help="Model repository (default: ferry's global --repo, or FERRY_REPOSITORY).",
)]


def _repository(ctx: typer.Context, path: Path | None) -> Repository:
    return Repository(path) if path is not None else state(ctx).repo


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode("utf-8") if value else None


@signing_key_app.command("new")
def new(
    path: Annotated[Path, typer.Argument(metavar="KEY", help="Where to write the private key "
                                         "(a new file, mode 0600).")],
    comment: Annotated[str, typer.Option(
        "--comment", help="Who the key belongs to, written after the public key.",
    )] = "",
) -> None:
    """Write a new private key and print its public line for a trusted keys file.

    Encrypted with FERRY_SIGNING_KEY_PASSPHRASE when that is set.

    Example: [bold]ferry signing-key new release.pem --comment release-ci >> trusted-keys[/]
    """
    key = SigningKey.generate()
    key.write(path, _passphrase())
    err_console.print(f"wrote private key {key.key_id} to {escape(str(path))} (mode 0600): "
                      "keep it where models are published, never on a server",
                      highlight=False)
    out_console.print(key.public_line(comment or path.stem), markup=False, highlight=False)


@signing_key_app.command("public")
def public(
    path: KeyPath,
    comment: Annotated[str, typer.Option("--comment", help="Text after the key.")] = "",
) -> None:
    """Print a private key's public line (for a trusted keys file).

    Example: [bold]ferry signing-key public release.pem >> trusted-keys[/]
    """
    key = SigningKey.read(path, _passphrase())
    out_console.print(key.public_line(comment or path.stem), markup=False, highlight=False)


@app.command("sign")
def sign(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME or NAME:VERSION (default: the latest).")],
    key_path: Annotated[Path, typer.Option(
        "--key", "-k", help="The private key (ferry signing-key new).", show_default=False,
    )],
    repository: RepositoryPath = None,
) -> None:
    """Sign a version's manifest (which holds every file's sha256) into manifest.sig.

    Every file is checked first: a damaged version is never signed. Signing again with
    the same key replaces that key's signature; other keys' signatures stay.

    Example: [bold]ferry sign digits:3 --key release.pem[/]
    """
    repo = _repository(ctx, repository)
    ref = ModelRef.parse(model)
    version = repo.resolve(ref)
    signature = repo.sign(ModelRef(ref.name, version), SigningKey.read(key_path, _passphrase()))
    err_console.print(f"signed {ref.name}:{version} with key {signature.key_id}",
                      highlight=False)


@app.command("verify")
def verify(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME or NAME:VERSION (default: the latest).")],
    trusted_keys: Annotated[Path, typer.Option(
        "--trusted-keys", envvar="FERRY_SECURITY__TRUSTED_KEYS_FILE", show_default=False,
        help="The trusted keys file (\\[security] trusted_keys_file).",
    )],
    repository: RepositoryPath = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check that a version is signed by a trusted key and its files match; say which key.

    Exit status 2, with the reason, when it is unsigned, signed by no trusted key, its
    signature does not verify, or a file changed.

    Example: [bold]ferry verify digits:3 --trusted-keys trusted-keys[/]
    """
    repo = _repository(ctx, repository)
    ref = ModelRef.parse(model)
    version = repo.resolve(ref)
    signer = repo.verify_signature(ModelRef(ref.name, version), TrustedKeys(trusted_keys))
    if as_json:
        print_json({"model": ref.name, "version": version, "key_id": signer.key_id,
                    "comment": signer.comment})
        return
    out_console.print(f"{ref.name}:{version} is signed by trusted key {signer}; "
                      "every file matches its manifest", markup=False, highlight=False)
