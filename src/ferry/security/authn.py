"""Authentication: the first policy of the chain, turning a bearer credential into a principal.

Every door hands the engine a :class:`~ferry.call.CallContext` whose ``credentials`` are the
``Authorization`` header (REST) or the ``authorization`` metadata (gRPC), verbatim.
:class:`Authenticate` reads ``Bearer <credential>`` (the scheme in any case) and accepts:

- an API key (``fk_<id>_<secret>``, :mod:`ferry.security.api_keys`): principal
  ``key:<name>``, the key's grants;
- otherwise a JWT (:mod:`ferry.security.jwt`): principal ``jwt:<sub>``, the token's grants.

With ``certificate_grants`` (``[security] tls_client_principal``), a call that presents **no**
``Authorization`` at all but came over a connection whose client certificate the TLS
handshake verified (``call.certificate``, its subject's common name) authenticates as
principal ``cert:<CN>`` with those grants, the same for every certificate. A bearer
credential, when present, always decides: a bad one is refused even on a connection with a
good certificate (no silent fall-back to a weaker identity), and a good one names the
principal. Without that setting a client certificate only opens the connection.

It sets ``call.principal`` and ``call.grants`` (``(role, pattern)`` pairs, see
:mod:`ferry.security.grants`) for the authorizing policy. Calls ferry makes for itself
(protocol ``"internal"``) pass untouched, and so do health checks (``Kind.LIVE`` and
``Kind.READY``) while ``open_health`` is on, credentials or not, so that load balancers and
probes need none; a model's readiness names a model and is not a health check.

**Refusals** are :class:`~ferry.errors.AuthenticationError` (401 with ``WWW-Authenticate:
Bearer`` on REST, ``UNAUTHENTICATED`` on gRPC) whose message names the problem and never
contains the credential; each one is also handed to ``audit("auth_failure", call,
reason=...)``.

**The cache.** Verifying costs a SHA-256 (an API key) or a signature check (a JWT: tens of
microseconds for RS256/ES256), too much for every request, so verified credentials are kept
in a dict keyed by the BLAKE2s hash of the ``Authorization`` value as sent: the raw token is
never a key, and a hit costs that hash, a dict look-up and a clock read, with no parsing of
the header (a flat path at the top of :meth:`Authenticate.check`; under 1 µs on its own). An
entry lives until the token's ``exp`` or ``cache_ttl`` (60 s), whichever comes first
(measured on the monotonic clock from verification), and every entry is dropped when the
key store reloads its file (:attr:`KeyStore.generation`), so a revoked key stops working
within the store's reload interval (1 s), cached or not. The dict is bounded
(``cache_size``, 10,000): when full, the oldest entry goes (first in, first out, so a hit
moves nothing). Failures are not cached: a refused credential is verified again each time.
Each distinct grants tuple is shared by every call that carries it, which is what the
authorizing policy's per-tuple cache expects.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from hashlib import blake2s
from typing import NoReturn

from ferry.call import CallContext
from ferry.errors import AuthenticationError, ConfigError
from ferry.policy import Action, Kind, Stage
from ferry.security.api_keys import KEY_PREFIX, KeyStore, parse_key
from ferry.security.grants import Grant
from ferry.security.jwt import JwtVerifier

__all__ = ["Authenticate"]

_log = logging.getLogger("ferry.security")

# Module constants and identity tests: `Kind.LIVE` is a slow class attribute look-up and
# an Enum's __hash__ is Python code, so `kind in {...}` would cost more than the cache hit.
_LIVE = Kind.LIVE
_READY = Kind.READY
_HOW = "send Authorization: Bearer <key or token>"
_MAX_INTERNED = 1024

#: A cache entry: principal, grants, monotonic time it expires at.
_Entry = tuple[str, tuple[Grant, ...], float]


def _digest(header: str) -> bytes:
    """The cache's key for an ``Authorization`` value: its BLAKE2s, never the value itself.

    The whole value as sent (scheme included) is hashed, so that a hit needs no parsing;
    the same credential sent with other spacing is one more entry, verified once. BLAKE2s
    (CPython's own code) rather than OpenSSL's SHA-256: measured in a serving process,
    OpenSSL's per-call set-up made SHA-256 cost 1.4 µs a request, several times its cost in
    isolation.
    """
    return blake2s(header.encode("utf-8", "surrogatepass")).digest()


class Authenticate:
    """The authenticating policy (:attr:`Stage.AUTHENTICATE`): API keys and/or JWTs.

    Args:
        keys: the API key store; None: API keys are refused.
        jwt: the JWT verifier; None: JWTs are refused.
        certificate_grants: grants of a caller identified by its verified client
            certificate alone (see above); None: a certificate is no principal.
        open_health: let ``LIVE`` and ``READY`` calls through without credentials.
        audit: called as ``audit("auth_failure", call, reason=...)`` on every refusal
            (e.g. a :class:`~ferry.security.audit.AuditLog`); its own errors are logged,
            never turned into the answer.
        cache_size: most verified credentials kept (at least 1).
        cache_ttl: most seconds a verified credential is trusted without checking again.
        clock: the monotonic clock; ``wall``: the epoch clock ``exp`` is compared with
            (tests pass fake ones).

    Raises:
        ConfigError: without any way to authenticate, or with a cache size below 1.
    """

    stage = Stage.AUTHENTICATE

    def __init__(self, *, keys: KeyStore | None = None, jwt: JwtVerifier | None = None,
                 certificate_grants: tuple[Grant, ...] | None = None,
                 open_health: bool = True, audit: Callable[..., None] | None = None,
                 cache_size: int = 10_000, cache_ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if keys is None and jwt is None and certificate_grants is None:
            raise ConfigError("authentication needs an API keys file, a JWT verifier or "
                              "client certificates")
        if cache_size < 1:
            raise ConfigError(f"the credential cache size must be at least 1, not {cache_size}")
        self._keys = keys
        self._jwt = jwt
        self._certificate_grants = certificate_grants
        self.open_health = open_health
        self._audit = audit
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._wall = wall
        self._cache: dict[bytes, _Entry] = {}
        self._generation = keys.generation if keys is not None else 0
        self._interned: dict[tuple[Grant, ...], tuple[Grant, ...]] = {}

    def __repr__(self) -> str:
        return (f"Authenticate(keys={self._keys!r}, jwt={self._jwt!r}, "
                f"open_health={self.open_health}, cached={len(self._cache)})")

    @property
    def cached(self) -> int:
        """How many verified credentials the cache holds now."""
        return len(self._cache)

    def check(self, call: CallContext, action: Action) -> None:
        """Authenticate ``call`` (set its principal and grants) or raise 401."""
        # The hit path, first and flat: it runs for every request of a secured server, so
        # it does no more than the cache look-up needs (see the module docstring).
        header = call.credentials
        if header and call.protocol != "internal":
            kind = action.kind
            if not (self.open_health and (kind is _LIVE or kind is _READY)):
                keys = self._keys
                if keys is None or keys.refresh() == self._generation:
                    entry = self._cache.get(_digest(header))
                    if entry is not None and self._clock() < entry[2]:
                        call.principal = entry[0]
                        call.grants = entry[1]
                        return
        try:
            self._check(call, action)
        except AuthenticationError as error:  # (free until raised: 3.11's exceptions)
            if self._audit is not None:
                try:
                    self._audit("auth_failure", call, reason=error.message,
                                model=action.model)
                except Exception:  # the refusal stands whatever the audit sink does
                    _log.exception("the audit sink failed to record an authentication "
                                   "failure")
            raise

    def _check(self, call: CallContext, action: Action) -> None:
        kind = action.kind
        if call.protocol == "internal" or (
                self.open_health and (kind is _LIVE or kind is _READY)):
            return
        header = call.credentials
        if not header:
            if call.certificate and self._certificate_grants is not None:
                call.principal = "cert:" + call.certificate
                call.grants = self._certificate_grants
                return
            self._refuse(call, f"no credentials: {_HOW}")
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            self._refuse(call, f"the Authorization scheme must be Bearer: {_HOW}")
        credential = credential.strip()
        if not credential:
            self._refuse(call, f"empty bearer credential: {_HOW}")
        if self._keys is not None:
            generation = self._keys.refresh()
            if generation != self._generation:  # the keys file changed: trust nothing cached
                self._cache.clear()
                self._generation = generation
        digest = _digest(header)
        entry = self._cache.get(digest)
        now = self._clock()
        if entry is None or now >= entry[2]:
            entry = self._verify(call, credential, now)
            if entry[2] > now:
                self._remember(digest, entry)
        call.principal = entry[0]
        call.grants = entry[1]

    def _verify(self, call: CallContext, credential: str, now: float) -> _Entry:
        """Verify a credential the cache does not vouch for: (principal, grants, expiry)."""
        if credential.startswith(KEY_PREFIX):
            if self._keys is None:
                self._refuse(call, "API keys are not accepted by this server; send a JWT")
            if parse_key(credential) is None:
                self._refuse(call, "malformed API key: expected fk_<id>_<secret>")
            record = self._keys.verify(credential)
            if record is None:
                self._refuse(call, "unknown or revoked API key")
            return f"key:{record.name}", self._intern(record.grants), now + self.cache_ttl
        if self._jwt is None:
            self._refuse(call, "malformed credentials: expected an API key (fk_...)")
        try:
            token = self._jwt.verify(credential)
        except AuthenticationError as error:
            reason = error.message
        else:
            ttl = min(self.cache_ttl, token.expires - self._wall())
            return f"jwt:{token.subject}", self._intern(token.grants), now + ttl
        self._refuse(call, reason)

    def _remember(self, digest: bytes, entry: _Entry) -> None:
        cache = self._cache
        if len(cache) >= self.cache_size:
            # First in, first out: the oldest entry is also the nearest to expiring. Another
            # thread may have emptied or changed the dict meanwhile: then nothing to drop.
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del cache[next(iter(cache))]
        cache[digest] = entry

    def _intern(self, grants: tuple[Grant, ...]) -> tuple[Grant, ...]:
        """One shared tuple per distinct grants (bounded)."""
        shared = self._interned.get(grants)
        if shared is None:
            if len(self._interned) >= _MAX_INTERNED:
                self._interned.clear()
            self._interned[grants] = shared = grants
        return shared

    def _refuse(self, call: CallContext, reason: str) -> NoReturn:
        raise AuthenticationError(reason)
