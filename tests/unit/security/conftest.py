"""Real signing keys and a JWKS file for the authentication tests (made per session)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ferry.security.jwt import JwtVerifier
from secrets_used import remember


@dataclass
class Signer:
    """Everything needed to mint tokens that the verifier of ``jwt_files`` accepts (or not)."""

    secret: bytes
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    rsa_public_pem: bytes
    secret_file: Path
    jwks_file: Path

    def token(self, alg: str = "HS256", *, kid: str | None = None, headers: dict[str, Any] | None = None,
              **claims: Any) -> str:
        payload = {"sub": "alice", "exp": int(time.time()) + 600, "ferry_grants": ["infer:digits*"]}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        head = dict(headers or {})
        if alg == "HS256":
            key: Any = self.secret
        elif alg == "RS256":
            key = self.rsa
            head.setdefault("kid", kid or "rsa-1")
        else:
            key = self.ec
            head.setdefault("kid", kid or "ec-1")
        head = {k: v for k, v in head.items() if v is not None}  # kid=None: no kid
        return jwt.encode(payload, key, algorithm=alg, headers=head)

    def verifier(self, **options: Any) -> JwtVerifier:
        return JwtVerifier.from_files(secret_file=self.secret_file, jwks_file=self.jwks_file,
                                      **options)


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    folder = tmp_path_factory.mktemp("jwt")
    secret = secrets.token_urlsafe(48).encode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
    ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
    jwks_file = folder / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    secret_file = folder / "secret"
    secret_file.write_bytes(secret + b"\n")
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    remember(secret, *(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
                       for key in (rsa_key, ec_key)))
    return Signer(secret, rsa_key, ec_key, pem, secret_file, jwks_file)
