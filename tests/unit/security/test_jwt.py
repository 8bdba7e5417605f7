"""JWT verification with real tokens: HS256, RS256 and ES256 from a JWKS file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from ferry.errors import AuthenticationError, ConfigError
from ferry.security.jwt import MAX_LEEWAY, JwtVerifier


def refused(verifier, token, phrase):
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    message = str(caught.value)
    assert phrase in message, message
    signature = token.split(".")[-1]
    assert token not in message and (not signature or signature not in message)
    assert caught.value.__cause__ is None
    return message


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_a_good_token_gives_subject_grants_and_expiry(signer, alg):
    exp = int(time.time()) + 300
    token = signer.token(alg, exp=exp, ferry_grants=["infer:digits*", "read:*"])
    verified = signer.verifier().verify(token)
    assert verified.subject == "alice"
    assert verified.grants == (("infer", "digits*"), ("read", "*"))
    assert verified.expires == exp


def test_the_default_allow_list_is_what_has_keys(signer):
    assert signer.verifier().algorithms == ("HS256", "RS256", "ES256")
    only_jwks = JwtVerifier.from_files(jwks_file=signer.jwks_file)
    assert only_jwks.algorithms == ("RS256", "ES256")
    refused(only_jwks, signer.token("HS256"), "algorithm is not accepted")
    rs_only = signer.verifier(algorithms=["RS256"])
    refused(rs_only, signer.token("ES256"), "algorithm is not accepted")


def test_expired_and_not_yet_valid(signer):
    verifier = signer.verifier(leeway=10)
    now = int(time.time())
    refused(verifier, signer.token(exp=now - 60), "the token has expired")
    assert verifier.verify(signer.token(exp=now - 5)).subject == "alice"  # within the leeway
    refused(verifier, signer.token(nbf=now + 60), "not valid yet")
    refused(verifier, signer.token("ES256", iat=now + 60), "not valid yet")
    refused(verifier, signer.token(exp=None), "no 'exp' claim")
    refused(verifier, signer.token(sub=None), "no 'sub' claim")
    refused(verifier, signer.token(sub=""), "'sub' claim must be a non-empty string")


def test_audience_and_issuer(signer):
    verifier = signer.verifier(audience="ferry", issuer=["https://idp.example"])
    good = signer.token("RS256", aud="ferry", iss="https://idp.example")
    assert verifier.verify(good).subject == "alice"
    refused(verifier, signer.token("RS256", aud="other", iss="https://idp.example"),
            "audience (aud) is not accepted")
    refused(verifier, signer.token("RS256", aud="ferry", iss="https://evil.example"),
            "issuer (iss) is not accepted")
    refused(verifier, signer.token("RS256", iss="https://idp.example"), "no 'aud' claim")
    refused(verifier, signer.token("RS256", aud="ferry"), "no 'iss' claim")
    # Without an audience configured, a token meant for someone else is refused (RFC 7519).
    refused(signer.verifier(), signer.token(aud="someone-else"), "audience")


def test_wrong_signatures_and_keys(signer):
    verifier = signer.verifier()
    refused(verifier, jwt.encode({"sub": "a", "exp": time.time() + 60}, "x" * 40,
                                 algorithm="HS256"), "signature does not verify")
    token = signer.token("RS256")
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"sub": "root", "exp": int(time.time()) + 60, "ferry_grants": ["admin:*"]}).encode()
    ).rstrip(b"=").decode()
    refused(verifier, f"{head}.{forged}.{sig}", "signature does not verify")
    refused(verifier, signer.token("RS256", kid="nope"), "kid) is not in the JWKS file")
    refused(verifier, signer.token("ES256", kid="rsa-1"), "does not match its key")
    # Without kid: taken only when a single key of the algorithm could verify it.
    assert verifier.verify(signer.token("RS256", headers={"kid": None})).subject == "alice"
    doc = json.loads(signer.jwks_file.read_text())
    (rsa_jwk,) = [key for key in doc["keys"] if key["kty"] == "RSA"]
    two = JwtVerifier(jwks={"keys": [rsa_jwk, {**rsa_jwk, "kid": "rsa-2"}]})
    refused(two, signer.token("RS256", headers={"kid": None}), "no 'kid' header")
    assert two.verify(signer.token("RS256", kid="rsa-2")).subject == "alice"


def test_a_token_without_kid_is_taken_when_one_key_fits(signer, tmp_path):
    doc = json.loads(signer.jwks_file.read_text())
    (rsa_only,) = [key for key in doc["keys"] if key["kty"] == "RSA"]
    del rsa_only["kid"]
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"keys": [rsa_only]}))
    token = jwt.encode({"sub": "bob", "exp": time.time() + 60}, signer.rsa, algorithm="RS256")
    assert JwtVerifier.from_files(jwks_file=path).verify(token).subject == "bob"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_confusion_hs256_signed_with_the_rsa_public_key_is_refused(signer):
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = _b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 60,
                               "ferry_grants": ["admin:*"]}).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = _b64(hmac.new(signer.rsa_public_pem, signing_input, hashlib.sha256).digest())
    token = f"{header}.{payload}.{sig}"
    refused(signer.verifier(), token, "signature does not verify")
    refused(JwtVerifier.from_files(jwks_file=signer.jwks_file), token,
            "algorithm is not accepted")


def test_alg_none_is_refused(signer):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 60}).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(AuthenticationError):
            signer.verifier().verify(token)
    refused(signer.verifier(), f"{header}.{payload}.", "algorithm is not accepted")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "eyJ.eyJ.x", "x" * 20000])
def test_malformed_tokens(signer, token):
    with pytest.raises(AuthenticationError) as caught:
        signer.verifier().verify(token)
    if token:
        assert token not in str(caught.value)


def test_grants_claims(signer):
    verifier = signer.verifier()
    assert verifier.verify(signer.token(ferry_grants=None)).grants == ()
    refused(verifier, signer.token(ferry_grants=["infer:x", "wizard:*"]), "unknown role")
    refused(verifier, signer.token(ferry_grants={"infer": "x"}), "must be a list")
    scoped = signer.verifier(grants_claim="scope")
    token = signer.token(scope="openid profile infer:digits* read:*")
    assert scoped.verify(token).grants == (("infer", "digits*"), ("read", "*"))


def test_configuration_errors(signer, tmp_path):
    with pytest.raises(ConfigError, match="out of range"):
        signer.verifier(leeway=MAX_LEEWAY + 1)
    with pytest.raises(ConfigError, match="out of range"):
        signer.verifier(leeway=-1)
    with pytest.raises(ConfigError, match="no JWT key configured"):
        JwtVerifier()
    with pytest.raises(ConfigError, match="fewer than 32"):
        JwtVerifier(secret=b"short")
    with pytest.raises(ConfigError, match="looks like a public key"):
        JwtVerifier(secret=signer.rsa_public_pem)
    with pytest.raises(ConfigError, match="not supported"):
        signer.verifier(algorithms=["none"])
    with pytest.raises(ConfigError, match="not supported"):
        signer.verifier(algorithms=["HS512"])
    with pytest.raises(ConfigError, match="no key configured"):
        JwtVerifier.from_files(jwks_file=signer.jwks_file, algorithms=["HS256"])
    oct_key = {"kty": "oct", "k": _b64(b"s" * 32), "kid": "sym"}
    with pytest.raises(ConfigError, match="secret key material") as caught:
        JwtVerifier(jwks={"keys": [oct_key]})
    assert oct_key["k"] not in str(caught.value)
    with pytest.raises(ConfigError, match="no keys"):
        JwtVerifier(jwks={"keys": []})
    with pytest.raises(ConfigError, match="not a usable JWK"):
        JwtVerifier(jwks={"keys": [{"kty": "RSA", "kid": "x"}]})
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        JwtVerifier.from_files(jwks_file=bad)
    with pytest.raises(ConfigError, match="cannot read"):
        JwtVerifier.from_files(secret_file=tmp_path / "missing")


def test_repr_shows_no_secret(signer):
    text = repr(signer.verifier())
    assert signer.secret.decode() not in text and "HS256" in text
