"""Issue 15's secured runs: how ``ferry serve`` is configured, and what each request carries.

Three variants of ferry's W1 V2 JSON run, each against its own ``ferry serve``: with an API
key, with an HS256 JWT, and over TLS without authentication. Each is configured through
``[security]`` settings in the environment (``FERRY_SECURITY__*``), as an operator would.

The credentials are made here, in the benchmark's scratch directory (mode 0700, files 0600):
a key with ``KeyStore.add`` (grant ``infer:*``), a token signed with a fresh 48-byte secret,
a self-signed certificate for 127.0.0.1 with ``cryptography``. A credential travels only in
the ``Authorization`` header: to wrk in a headers file that ``wrk/post.lua`` reads (never on
a command line, so never in a process list or an error message), to the harness's checks as
a header; :class:`Variant` keeps it out of its repr.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.results import (
    V2_JSON_API_KEY,
    V2_JSON_CONSOLE,
    V2_JSON_CONTROL,
    V2_JSON_JWT,
    V2_JSON_TLS,
)

#: The ``[security]`` settings a TLS run needs; without them ferry cannot serve TLS.
TLS_SETTINGS = ("tls_cert_file", "tls_key_file")
NO_TLS = "not measured: ferry has no TLS settings"
#: Seconds a benchmark JWT stays valid: longer than any ``make bench`` run.
TOKEN_LIFETIME = 6 * 3600


@dataclass(frozen=True)
class Variant:
    """How one secured run starts ferry and what its requests carry.

    ``missing`` says why the run cannot be made here (then nothing else is set).
    """

    route: str
    env: dict[str, str] = field(default_factory=dict)
    #: ``Authorization`` and its value, or empty: the credential (never printed).
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: The same headers as ``Name: value`` lines, for ``wrk/post.lua``.
    headers_file: Path | None = None
    scheme: str = "http"
    #: The certificate a TLS run's checks trust (wrk does not verify certificates).
    ca_file: Path | None = None
    missing: str | None = None
    #: Poll the console's live view (``/console/api/live``) every second during the run, as
    #: an open console page does (issue 21: the console must not cost the inference path).
    console: bool = False

    def context(self) -> ssl.SSLContext | None:
        """The TLS client context of the harness's own requests (None over plain HTTP)."""
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))


def variants(folder: Path) -> list[Variant]:
    """The secured runs, their credentials made afresh in ``folder`` (emptied first), and
    the plain server with its console open: every run paired with the control runs."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return [api_key(folder), jwt_token(folder), tls(folder), console_open()]


def console_open() -> Variant:
    """The plain server while a client watches its console's live view."""
    return Variant(V2_JSON_CONSOLE, console=True)


def control() -> Variant:
    """The plain run beside the secured ones: the same server set-up, no ``[security]``."""
    return Variant(V2_JSON_CONTROL)


def api_key(folder: Path) -> Variant:
    """An API keys file with one key granted ``infer:*``; requests send that key."""
    from ferry.security.api_keys import KeyStore

    keys_file = folder / "keys.json"
    key = KeyStore(keys_file).add("bench", ["infer:*"])
    return _bearer(folder, V2_JSON_API_KEY, "api-key", key,
                   {"FERRY_SECURITY__API_KEYS_FILE": str(keys_file)})


def jwt_token(folder: Path) -> Variant:
    """An HS256 secret file; requests send a token signed with it, granting ``infer:*``."""
    import jwt

    secret = secrets.token_urlsafe(48).encode()
    secret_file = _private(folder / "hs256.secret", secret)
    now = int(time.time())
    token = jwt.encode({"sub": "bench", "iat": now, "exp": now + TOKEN_LIFETIME,
                        "ferry_grants": ["infer:*"]}, secret, algorithm="HS256")
    return _bearer(folder, V2_JSON_JWT, "jwt", token,
                   {"FERRY_SECURITY__JWT_HS256_SECRET_FILE": str(secret_file)})


def tls(folder: Path) -> Variant:
    """A self-signed certificate for 127.0.0.1 served by ferry; no authentication."""
    if not tls_supported():
        return Variant(V2_JSON_TLS, missing=NO_TLS)
    cert, key = self_signed(folder / "cert.pem", folder / "key.pem")
    return Variant(V2_JSON_TLS, env={"FERRY_SECURITY__TLS_CERT_FILE": str(cert),
                                     "FERRY_SECURITY__TLS_KEY_FILE": str(key)},
                   scheme="https", ca_file=cert)


def tls_supported() -> bool:
    """Whether this ferry has the ``[security]`` TLS settings."""
    from ferry.settings import SecuritySettings

    return all(name in SecuritySettings.model_fields for name in TLS_SETTINGS)


def self_signed(cert_file: Path, key_file: Path, *, days: int = 2) -> tuple[Path, Path]:
    """Write a self-signed P-256 certificate for ``127.0.0.1`` and ``localhost``, and its key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferry benchmark")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _private(key_file, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def _bearer(folder: Path, route: str, name: str, credential: str,
            env: dict[str, str]) -> Variant:
    headers = {"Authorization": f"Bearer {credential}"}
    lines = "".join(f"{name}: {value}\n" for name, value in headers.items())
    headers_file = _private(folder / f"headers-{name}.txt", lines.encode())
    return Variant(route, env=env, headers=headers, headers_file=headers_file)


def _private(path: Path, content: bytes) -> Path:
    """Write ``content`` readable by this user only (created 0600, never wider)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
    return path
