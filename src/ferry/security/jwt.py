"""JWT bearer tokens: verify a token's signature and claims, and read who and what from it.

The one module that uses PyJWT (the ``security`` extra, ``pip install 'ferry[security]'``).

**Keys and algorithms.** Three algorithms, each with its own key source and nothing else:
``HS256`` with a shared secret (a file of at least 32 bytes), ``RS256`` and ``ES256`` with
the public keys of a JWKS file (``{"keys": [...]}``), chosen by the token's ``kid``. The
allow-list is fixed at construction; ``none`` and every other algorithm are refused. The
token's ``alg`` only picks among configured keys: an HS256 token is checked against the
shared secret only, never against a JWKS key, and a JWKS key verifies only the algorithm
it was made for (PyJWT binds a ``PyJWK`` to its algorithm), so the classic confusion
attack (an HS256 token "signed" with the RSA public key) fails. A JWKS file must not hold
symmetric (``oct``) keys, and a secret that looks like a PEM or SSH public key is refused.
A token without ``kid`` is accepted only when the JWKS file holds exactly one key for its
algorithm.

**Claims.** ``exp`` and ``sub`` are required; ``nbf`` and ``iat`` are checked when present;
``aud`` and ``iss`` are required and checked when an audience / issuer is configured (as
RFC 7519 asks, a token that names an audience is refused when none is configured). The
clock-skew ``leeway`` defaults to 30 s and may not exceed :data:`MAX_LEEWAY` (300 s).

**Who and what.** The principal is ``sub``. The grants come from one claim,
``ferry_grants`` unless configured otherwise, in the format of :mod:`ferry.security.grants`:

- a JSON list of ``"role:pattern"`` strings (``["infer:digits*", "read:*"]``): every entry
  must be a valid grant, or the token is refused;
- or a space-separated string, as OAuth's ``scope`` is (``grants_claim="scope"``):
  ``"openid infer:digits* read:*"``; entries that do not start with a ferry role and ``:``
  belong to other services and are ignored.

A token without the claim authenticates with no grants (the authorizing policy then lets
it do nothing but health checks).

**No secret in messages.** Refusals are :class:`~ferry.errors.AuthenticationError` with a
message written here, never PyJWT's (some quote key material) and never the token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ferry.errors import AuthenticationError, ConfigError, MissingDependencyError
from ferry.security.grants import Grant, Role, parse_grants

try:
    import jwt as pyjwt
except ImportError:  # pragma: no cover - the `security` extra is not installed
    pyjwt = None  # type: ignore[assignment]

__all__ = ["ALGORITHMS", "MAX_LEEWAY", "MAX_TOKEN_BYTES", "JwtVerifier", "VerifiedToken"]

#: The algorithms ferry verifies, each tied to one kind of key.
ALGORITHMS = ("HS256", "RS256", "ES256")
#: The largest clock-skew allowance accepted at configuration time, in seconds.
MAX_LEEWAY = 300.0
#: Longer tokens are refused before any parsing (a cheap bound on what a client makes us do).
MAX_TOKEN_BYTES = 16 * 1024
#: The shortest HS256 secret accepted (RFC 7518 3.2: at least the hash size).
MIN_SECRET_BYTES = 32

_MIN_RSA_BITS = 2048
_ROLE_PREFIXES = tuple(f"{role.value}:" for role in Role)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a verified token says: who (``sub``), what (grants), until when (``exp``)."""

    subject: str
    grants: tuple[Grant, ...]
    expires: float
    """``exp``, in seconds since the epoch."""


def _require_pyjwt() -> None:
    if pyjwt is None:  # pragma: no cover - the extra is installed in tests
        raise MissingDependencyError("JWT verification needs PyJWT",
                                     hint="pip install 'ferry[security]'")


def _refuse(message: str) -> NoReturn:
    raise AuthenticationError(message)


class JwtVerifier:
    """Verifies bearer JWTs against a shared secret and/or a JWKS (see the module docstring).

    Args:
        secret: the HS256 shared secret (at least 32 bytes); None: no HS256.
        jwks: the JWKS document (``{"keys": [...]}``) with the RS256/ES256 public keys.
        algorithms: the allow-list, a subset of :data:`ALGORITHMS`; default: every
            algorithm whose keys are configured.
        audience: the accepted ``aud`` value(s); None: do not check (and refuse tokens
            that name one).
        issuer: the accepted ``iss`` value(s); None: do not check.
        leeway: seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat`` (0-300).
        grants_claim: the claim holding the grants (``ferry_grants``, or e.g. ``scope``).

    Raises:
        ConfigError: for anything inconsistent, named.
        MissingDependencyError: if PyJWT is not installed.
    """

    def __init__(self, *, secret: bytes | None = None, jwks: Mapping[str, Any] | None = None,
                 algorithms: Iterable[str] | None = None,
                 audience: str | Sequence[str] | None = None,
                 issuer: str | Sequence[str] | None = None, leeway: float = 30.0,
                 grants_claim: str = "ferry_grants") -> None:
        _require_pyjwt()
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigError(f"JWT leeway {leeway} s is out of range",
                              hint=f"allow 0 to {MAX_LEEWAY:.0f} s of clock skew")
        self._secret = self._check_secret(secret) if secret is not None else None
        self._by_kid: dict[str, Any] = {}  # kid -> PyJWK
        self._only: dict[str, Any] = {}  # alg -> its one PyJWK, when the set has just one
        if jwks is not None:
            self._load_jwks(jwks)
        available = {"HS256"} if self._secret is not None else set()
        available |= {key.algorithm_name for key in self._by_kid.values()}
        available |= set(self._only)
        if algorithms is None:
            chosen = tuple(alg for alg in ALGORITHMS if alg in available)
        else:
            chosen = tuple(dict.fromkeys(algorithms))
            for alg in chosen:
                if alg not in ALGORITHMS:
                    raise ConfigError(f"JWT algorithm {alg!r} is not supported",
                                      hint=f"choose among {', '.join(ALGORITHMS)}")
                if alg not in available:
                    raise ConfigError(f"JWT algorithm {alg} has no key configured",
                                      hint="HS256 needs a secret file, RS256/ES256 a JWKS "
                                           "file with such a key")
        if not chosen:
            raise ConfigError("no JWT key configured",
                              hint="give an HS256 secret file or a JWKS file")
        self.algorithms: tuple[str, ...] = chosen
        self.audience = audience
        self.issuer = issuer
        self.leeway = float(leeway)
        self.grants_claim = grants_claim
        required = ["exp", "sub"]
        if audience is not None:
            required.append("aud")
        if issuer is not None:
            required.append("iss")
        self._options: Any = {"require": required, "enforce_minimum_key_length": True}

    @classmethod
    def from_files(cls, *, secret_file: str | Path | None = None,
                   jwks_file: str | Path | None = None, **options: Any) -> JwtVerifier:
        """A verifier with the secret and/or JWKS read from files (the other options as given).

        The secret file's trailing whitespace (a final newline) is not part of the secret.
        """
        secret = None
        if secret_file is not None:
            secret = _read(secret_file, "JWT secret").rstrip()
        jwks = None
        if jwks_file is not None:
            try:
                jwks = json.loads(_read(jwks_file, "JWKS"))
            except ValueError:
                raise ConfigError(f"the JWKS file {jwks_file} is not JSON",
                                  hint='it should be {"keys": [...]}') from None
            if not isinstance(jwks, dict):
                raise ConfigError(f"the JWKS file {jwks_file} is not a JSON object",
                                  hint='it should be {"keys": [...]}')
        return cls(secret=secret, jwks=jwks, **options)

    def __repr__(self) -> str:
        return (f"JwtVerifier(algorithms={self.algorithms!r}, keys={len(self._by_kid)}, "
                f"audience={self.audience!r}, issuer={self.issuer!r}, leeway={self.leeway})")

    # ------------------------------------------------------------------ config

    @staticmethod
    def _check_secret(secret: bytes) -> bytes:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the HS256 secret has {len(secret)} bytes, fewer than "
                              f"{MIN_SECRET_BYTES}",
                              hint="make one with: python -c 'import secrets; "
                                   "print(secrets.token_urlsafe(48))'")
        if secret.lstrip().startswith((b"-----BEGIN", b"ssh-", b"ecdsa-")):
            raise ConfigError("the HS256 secret looks like a public key",
                              hint="HS256 needs a shared secret; put public keys in the JWKS "
                                   "file (RS256/ES256)")
        return secret

    def _load_jwks(self, jwks: Mapping[str, Any]) -> None:
        entries = jwks.get("keys")
        if not isinstance(entries, list) or not entries:
            raise ConfigError("the JWKS has no keys", hint='it should be {"keys": [...]}')
        by_alg: dict[str, list[Any]] = {}
        for index, entry in enumerate(entries):
            where = f"JWKS key #{index}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} is not a JSON object")
            if entry.get("kty") == "oct" or "d" in entry or "k" in entry:
                # Say which key, never what it holds.
                raise ConfigError(f"{where} holds secret key material",
                                  hint="a JWKS file holds public RS256/ES256 keys; HS256 "
                                       "reads its secret from its own file")
            try:
                key = pyjwt.PyJWK(entry)
            except pyjwt.PyJWTError:
                raise ConfigError(f"{where} is not a usable JWK",
                                  hint="RSA (RS256) or EC P-256 (ES256) public keys") from None
            alg = key.algorithm_name
            if alg not in ("RS256", "ES256"):
                raise ConfigError(f"{where} is for {alg}, not RS256 or ES256")
            size = getattr(key.key, "key_size", None)
            if alg == "RS256" and size is not None and size < _MIN_RSA_BITS:
                raise ConfigError(f"{where} is a {size}-bit RSA key",
                                  hint=f"use at least {_MIN_RSA_BITS} bits")
            if key.key_id is not None:
                if key.key_id in self._by_kid:
                    raise ConfigError(f"{where} repeats the kid {key.key_id!r}")
                self._by_kid[key.key_id] = key
            by_alg.setdefault(alg, []).append(key)
        # Keys without a kid are reachable only as the one key of their algorithm.
        self._only = {alg: keys[0] for alg, keys in by_alg.items() if len(keys) == 1}

    # ---------------------------------------------------------------- verifying

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` and return its subject, grants and expiry.

        Raises:
            AuthenticationError: naming what is wrong (expired, not yet valid, wrong
                audience...), never quoting the token.
        """
        if len(token) > MAX_TOKEN_BYTES:
            _refuse(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            _refuse("malformed token: expected a JWT (header.payload.signature) or an "
                    "fk_ API key")
        alg = header.get("alg")
        if alg not in self.algorithms:
            _refuse(f"the token's algorithm is not accepted (accepted: "
                    f"{', '.join(self.algorithms)})")
        key: Any = self._secret if alg == "HS256" else self._key_for(alg, header.get("kid"))
        try:
            claims = pyjwt.decode(token, key, algorithms=[alg], audience=self.audience,
                                  issuer=self.issuer, leeway=self.leeway,
                                  options=self._options)
        except pyjwt.PyJWTError as error:
            _refuse(_reason(error))
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            _refuse("the token's 'sub' claim must be a non-empty string")
        return VerifiedToken(subject, self._grants(claims), float(claims["exp"]))

    def _key_for(self, alg: str, kid: Any) -> Any:
        if kid is None:
            key = self._only.get(alg)
            if key is None:
                _refuse("the token has no 'kid' header and several keys could verify it")
            return key
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            _refuse("the token's key id (kid) is not in the JWKS file")
        if key.algorithm_name != alg:
            _refuse("the token's algorithm does not match its key")
        return key

    def _grants(self, claims: dict[str, Any]) -> tuple[Grant, ...]:
        value = claims.get(self.grants_claim)
        if value is None:
            return ()
        if isinstance(value, str):
            ours = [part for part in value.split() if part.startswith(_ROLE_PREFIXES)]
            return parse_grants(ours, error=AuthenticationError)
        if isinstance(value, list) and all(isinstance(part, str) for part in value):
            return parse_grants(value, error=AuthenticationError)
        _refuse(f"the token's {self.grants_claim!r} claim must be a list of 'role:pattern' "
                "strings or a space-separated string of them")


def _reason(error: Exception) -> str:
    """A message of ours for a PyJWT error (theirs may quote values)."""
    if isinstance(error, pyjwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(error, pyjwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat in the future)"
    if isinstance(error, pyjwt.MissingRequiredClaimError):
        return f"the token has no {error.claim!r} claim"
    if isinstance(error, pyjwt.InvalidAudienceError):
        return "the token's audience (aud) is not accepted"
    if isinstance(error, pyjwt.InvalidIssuerError):
        return "the token's issuer (iss) is not accepted"
    if isinstance(error, pyjwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(error, pyjwt.InvalidAlgorithmError):
        return "the token's algorithm is not accepted"
    if isinstance(error, pyjwt.DecodeError):
        return "malformed token: expected a JWT (header.payload.signature) or an fk_ API key"
    return "the token is invalid"


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file {path}: {error.strerror}") from None
