"""Encryption in transit: the server's TLS certificate and key, and the client CA for mTLS.

:class:`ServerTls` reads ``[security] tls_cert_file`` / ``tls_key_file`` (and
``tls_client_ca_file``) once at startup and again on :meth:`ServerTls.reload` (SIGHUP).
Both front ends take it from there:

- **REST**: :attr:`ServerTls.context` is the one :class:`ssl.SSLContext` the listening
  socket uses (uvicorn's ``ssl_context_factory``, its public hook). It never changes: its
  ``sni_callback`` (called by OpenSSL for every ClientHello, with or without SNI) hands
  each new connection the context built from the files as they were at the last reload,
  so a reload changes the certificate, the key *and* the trusted client CAs for new
  connections, and connections already open keep theirs.
- **gRPC**: :meth:`ServerTls.pem` gives the same files' bytes and a generation number
  that each reload bumps; ``protocols/grpc/server.py`` serves them through grpc's
  ``dynamic_ssl_server_credentials``, whose fetcher grpc calls for each new connection.

**Protocol versions**: TLS 1.2 and 1.3 only (:data:`MINIMUM_VERSION`). 1.2 stays allowed
for clients (and load balancers) that lack 1.3, with forward-secret AEAD suites only
(:data:`TLS12_CIPHERS`: ECDHE with AES-GCM or ChaCha20-Poly1305, Mozilla's "intermediate"
list less DHE); 1.3's suites are all of that kind. TLS compression is off, the server's
cipher order wins, and no session tickets are issued (so no resumed session outlives a
reload that distrusts its CA). gRPC's TLS (its own BoringSSL) accepts 1.2 and 1.3 only
too, its default; grpcio offers no setting for versions or ciphers.

**Client certificates (mTLS)**: with a client CA every connection must present a
certificate that chains to it, or the handshake fails (a REST client sees a TLS alert, a
gRPC call ``UNAVAILABLE``) before any request is read. The verified certificate's subject
common name reaches the call context as ``CallContext.certificate``
(:func:`peer_names` on REST, grpc's ``x509_common_name`` on gRPC); whether it may stand
for a principal is the authenticating policy's decision (``tls_client_principal``).

Errors name the setting and the file, never a file's content; an encrypted key is refused
(ferry would otherwise wait for a password on the terminal).
"""

from __future__ import annotations

import functools
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.errors import ConfigError

__all__ = ["MINIMUM_VERSION", "TLS12_CIPHERS", "Pem", "ServerTls", "common_name", "peer_names",
           "server_context"]

_log = logging.getLogger("ferry.security")

#: The oldest protocol version a client may use (TLS 1.0 and 1.1 are refused).
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: TLS 1.2 cipher suites (OpenSSL syntax); TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _encrypted_key() -> str:
    raise ConfigError("the TLS key file is encrypted: ferry needs an unencrypted key file "
                      "(readable by the server's user only, mode 0600)")


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None = None
                   ) -> ssl.SSLContext:
    """A server-side TLS context: TLS 1.2+, the certificate chain, mTLS with ``client_ca_file``.

    Raises:
        ConfigError: a file is missing, unreadable or not PEM, the key does not match the
            certificate, or the key is encrypted (the message names the setting and file).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_NO_TICKET)
    context.set_ciphers(TLS12_CIPHERS)
    context.num_tickets = 0  # no TLS 1.3 resumption either: each connection is verified anew
    # ferry's REST port speaks HTTP/1.1 only; a client that offers h2 is told so.
    context.set_alpn_protocols(["http/1.1"])
    _load(context.load_cert_chain, "tls_cert_file / tls_key_file",
          f"{cert_file} / {key_file}", str(cert_file), str(key_file), _encrypted_key)
    if client_ca_file is not None:
        _load(context.load_verify_locations, "tls_client_ca_file", str(client_ca_file),
              cafile=str(client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load(method: Any, key: str, where: str, *args: Any, **kwargs: Any) -> None:
    try:
        method(*args, **kwargs)
    except FileNotFoundError:
        raise ConfigError(f"[security] {key}: {where} does not exist") from None
    except PermissionError:
        raise ConfigError(f"[security] {key}: {where} is not readable by this user") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"[security] {key}: {where} is not a usable PEM certificate/key "
                          f"({reason})",
                          hint="the certificate file holds the server's certificate then "
                          "its intermediates, the key file its private key, both PEM"
                          ) from None


@dataclass(frozen=True, slots=True)
class Pem:
    """The files' bytes as last (re)loaded, for gRPC; ``generation`` grows with each reload."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None
    generation: int

    def __repr__(self) -> str:  # the key is a secret: never in a repr, log or traceback
        return f"Pem(generation={self.generation}, client_ca={self.client_ca is not None})"


class ServerTls:
    """The server's TLS material, from files, reloadable (see the module docstring).

    Args:
        cert_file: PEM certificate chain (the server's certificate first).
        key_file: its PEM private key, unencrypted.
        client_ca_file: PEM CA certificate(s) client certificates must chain to; None: no
            client certificates are asked for.

    Raises:
        ConfigError: the files cannot be used (see :func:`server_context`).
    """

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None = None
                 ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self._current, self._pem = self._read(0)
        # The listening socket's context: its own certificate is the first one, and each
        # handshake switches to the current context before a certificate is chosen.
        self.context = server_context(cert_file, key_file, client_ca_file)
        self.context.sni_callback = self._select

    def __repr__(self) -> str:
        return (f"ServerTls(cert_file={str(self.cert_file)!r}, "
                f"client_ca_file={str(self.client_ca_file) if self.client_ca_file else None!r}"
                f", generation={self._pem.generation})")

    @property
    def client_auth(self) -> bool:
        """Whether clients must present a certificate (mTLS)."""
        return self.client_ca_file is not None

    def pem(self) -> Pem:
        """The files' bytes as last loaded (gRPC serves these)."""
        return self._pem

    def reload(self) -> None:
        """Read the files again; new connections (REST and gRPC) get what they now hold.

        Raises:
            ConfigError: the files cannot be used; the previous material stays in use.
        """
        self._current, self._pem = self._read(self._pem.generation + 1)
        _log.info("TLS certificate reloaded from %s", self.cert_file)

    def _read(self, generation: int) -> tuple[ssl.SSLContext, Pem]:
        # The context validates the files (PEM, key matches certificate) before any byte of
        # them is served; the bytes are read right after, for gRPC.
        context = server_context(self.cert_file, self.key_file, self.client_ca_file)
        try:
            pem = Pem(self.cert_file.read_bytes(), self.key_file.read_bytes(),
                      self.client_ca_file.read_bytes() if self.client_ca_file else None,
                      generation)
        except OSError as exc:
            raise ConfigError(f"[security] TLS files: cannot read them ({exc.strerror})"
                              ) from None
        return context, pem

    def _select(self, ssl_object: Any, server_name: str | None,
                context: ssl.SSLContext) -> None:
        ssl_object.context = self._current


def peer_names(ssl_object: Any) -> tuple[str, str | None] | None:
    """The verified client certificate's subject: (RFC 4514 name, common name or None).

    None when the peer sent no certificate (no mTLS). Called once per connection.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    subject = x509.load_der_x509_certificate(der).subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = names[0].value if names else None
    return subject.rfc4514_string(), cn if isinstance(cn, str) else None


@functools.lru_cache(maxsize=256)
def common_name(rfc4514: str) -> str | None:
    """The common name (CN) in an RFC 4514 subject name, or None.

    The ASGI TLS extension's ``client_cert_name`` is such a name; None also when it cannot
    be parsed.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = x509.Name.from_rfc4514_string(rfc4514).get_attributes_for_oid(
            NameOID.COMMON_NAME)
    except ValueError:
        return None
    value = names[0].value if names else None
    return value if isinstance(value, str) else None
