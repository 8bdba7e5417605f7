"""The Authenticate policy: bearer API keys and JWTs, open health, the cache, the audit hook."""

from __future__ import annotations

import time

import pytest

from ferry.call import CallContext, internal_call
from ferry.errors import AuthenticationError, ConfigError
from ferry.policy import Action, Kind, Policy, Stage
from ferry.security.api_keys import KeyStore
from ferry.security.authn import Authenticate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """Wraps a verifier's or store's ``verify`` to count the verifications (cache misses)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def verify(self, credential):
        self.calls += 1
        return self.inner.verify(credential)


INFER = Action(Kind.INFER, "digits", None)


def call(credentials=None, protocol="rest"):
    return CallContext("req-1", protocol, "asgi", peer="10.0.0.1:5000", credentials=credentials)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def keys_path(tmp_path):
    return tmp_path / "ferry-keys.json"


@pytest.fixture
def key(keys_path):
    return KeyStore(keys_path).add("ci", ["infer:digits*", "read:*"])


@pytest.fixture
def audit():
    events = []

    def record(event, call, **fields):
        events.append((event, call, fields))

    record.events = events
    return record


@pytest.fixture
def policy(keys_path, key, signer, clock, audit):
    return Authenticate(keys=KeyStore(keys_path, clock=clock), jwt=signer.verifier(),
                        audit=audit, clock=clock)


def refused(policy, ctx, action, phrase):
    with pytest.raises(AuthenticationError) as caught:
        policy.check(ctx, action)
    message = str(caught.value)
    assert phrase in message, message
    if ctx.credentials:
        token = ctx.credentials.partition(" ")[2].strip()
        assert not token or (token not in message and token not in repr(ctx))
        assert "<hidden>" in repr(ctx)
    assert ctx.principal is None and ctx.grants is None
    return message


def test_it_is_a_policy_of_the_first_stage(policy):
    assert isinstance(policy, Policy) and policy.stage is Stage.AUTHENTICATE


def test_an_api_key_sets_principal_and_grants(policy, key):
    ctx = call(f"Bearer {key}")
    policy.check(ctx, INFER)
    assert ctx.principal == "key:ci"
    assert ctx.grants == (("infer", "digits*"), ("read", "*"))
    other = call(f"bearer   {key}")  # the scheme in any case, spaces tolerated
    policy.check(other, INFER)
    assert other.grants is ctx.grants  # one shared tuple (roles.py caches per tuple)


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_a_jwt_sets_principal_and_grants(policy, signer, alg):
    ctx = call(f"Bearer {signer.token(alg, sub='bob', ferry_grants=['admin:*'])}")
    policy.check(ctx, Action(Kind.LOAD, "digits"))
    assert ctx.principal == "jwt:bob" and ctx.grants == (("admin", "*"),)


@pytest.mark.parametrize(("header", "phrase"), [
    (None, "no credentials: send Authorization: Bearer <key or token>"),
    ("", "no credentials"),
    ("Basic dXNlcjpwYXNzd29yZA==", "scheme must be Bearer"),
    ("Bearer", "empty bearer credential"),
    ("Bearer    ", "empty bearer credential"),
    ("Bearer fk_short", "malformed API key: expected fk_<id>_<secret>"),
    ("Bearer not-a-token", "malformed token"),
    ("Bearer fk_0123abcd_" + "A" * 43, "unknown or revoked API key"),
])
def test_refusals_name_the_problem(policy, audit, header, phrase):
    ctx = call(header)
    message = refused(policy, ctx, INFER, phrase)
    (event,) = audit.events
    assert event[0] == "auth_failure" and event[1] is ctx
    assert event[2] == {"reason": message, "model": INFER.model}


def test_a_wrong_key_secret_is_refused_without_echo(policy, key):
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    refused(policy, call(f"Bearer {wrong}"), INFER, "unknown or revoked API key")


def test_jwt_refusals(policy, signer):
    now = int(time.time())
    refused(policy, call(f"Bearer {signer.token(exp=now - 600)}"), INFER, "the token has expired")
    refused(policy, call(f"Bearer {signer.token(nbf=now + 600)}"), INFER, "not valid yet")
    refused(policy, call(f"Bearer {signer.token('RS256', kid='gone')}"), INFER, "kid")


def test_internal_calls_and_open_health_pass_without_credentials(policy):
    ctx = internal_call("repository-watch")
    policy.check(ctx, Action(Kind.LOAD, "digits"))
    assert ctx.principal == "ferry"
    for kind in (Kind.LIVE, Kind.READY):
        probe = call()
        policy.check(probe, Action(kind))
        assert probe.principal is None  # the authorizing policy keeps health open for it
    refused(policy, call(), Action(Kind.MODEL_READY, "digits"), "no credentials")
    refused(policy, call(), Action(Kind.SERVER_METADATA), "no credentials")


def test_closed_health_needs_credentials(keys_path, key, clock):
    policy = Authenticate(keys=KeyStore(keys_path, clock=clock), open_health=False, clock=clock)
    refused(policy, call(), Action(Kind.LIVE), "no credentials")
    ctx = call(f"Bearer {key}")
    policy.check(ctx, Action(Kind.READY))
    assert ctx.principal == "key:ci"


def test_one_method_only(keys_path, key, signer):
    keys_only = Authenticate(keys=KeyStore(keys_path))
    refused(keys_only, call(f"Bearer {signer.token()}"), INFER, "expected an API key")
    jwt_only = Authenticate(jwt=signer.verifier())
    refused(jwt_only, call(f"Bearer {key}"), INFER, "API keys are not accepted")
    with pytest.raises(ConfigError, match="needs an API keys file, a JWT verifier or client"):
        Authenticate()
    with pytest.raises(ConfigError, match="at least 1"):
        Authenticate(keys=KeyStore(keys_path), cache_size=0)


def test_cache_hits_skip_verification(keys_path, key, signer, clock):
    store = Counting(KeyStore(keys_path, clock=clock))
    verifier = Counting(signer.verifier())
    policy = Authenticate(keys=store, jwt=verifier, clock=clock)
    token = signer.token("ES256")
    for _ in range(5):
        policy.check(call(f"Bearer {key}"), INFER)
        policy.check(call(f"Bearer {token}"), INFER)
    assert store.calls == 1 and verifier.calls == 1 and policy.cached == 2
    assert key.encode() not in b"".join(policy._cache)  # keyed by a hash, not the credential
    clock.now += 61  # the 60 s bound on trusting a credential without looking again
    policy.check(call(f"Bearer {key}"), INFER)
    assert store.calls == 2


def test_a_cached_token_expires_with_the_token(signer, clock):
    verifier = Counting(signer.verifier())
    policy = Authenticate(jwt=verifier, clock=clock)
    token = signer.token(exp=int(time.time()) + 10)
    policy.check(call(f"Bearer {token}"), INFER)
    clock.now += 5
    policy.check(call(f"Bearer {token}"), INFER)
    assert verifier.calls == 1
    clock.now += 6  # past exp as measured when it was verified
    policy.check(call(f"Bearer {token}"), INFER)
    assert verifier.calls == 2
    # A token already past exp but inside the leeway is accepted, never cached.
    late = signer.token(exp=int(time.time()) - 5)
    policy.check(call(f"Bearer {late}"), INFER)
    policy.check(call(f"Bearer {late}"), INFER)
    assert verifier.calls == 4


def test_the_cache_is_bounded(signer, clock):
    verifier = Counting(signer.verifier())
    policy = Authenticate(jwt=verifier, clock=clock, cache_size=3)
    tokens = [signer.token(sub=f"user{i}") for i in range(5)]
    for token in tokens:
        policy.check(call(f"Bearer {token}"), INFER)
    assert policy.cached == 3 and verifier.calls == 5
    policy.check(call(f"Bearer {tokens[-1]}"), INFER)  # newest: still cached
    assert verifier.calls == 5
    policy.check(call(f"Bearer {tokens[0]}"), INFER)  # oldest: evicted, verified again
    assert verifier.calls == 6 and policy.cached == 3


def test_revocation_is_seen_within_the_reload_window_even_when_cached(keys_path, key, clock):
    policy = Authenticate(keys=KeyStore(keys_path, clock=clock), clock=clock)
    policy.check(call(f"Bearer {key}"), INFER)
    KeyStore(keys_path).revoke("ci")  # the CLI, meanwhile
    clock.now += 0.5
    policy.check(call(f"Bearer {key}"), INFER)  # within the documented 1 s window
    clock.now += 0.5
    refused(policy, call(f"Bearer {key}"), INFER, "unknown or revoked API key")
    assert policy.cached == 0
    new_key = KeyStore(keys_path).add("ci", ["read:*"])
    clock.now += 1
    ctx = call(f"Bearer {new_key}")
    policy.check(ctx, INFER)
    assert ctx.grants == (("read", "*"),)


def test_a_failing_audit_sink_does_not_change_the_answer(keys_path, caplog):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    policy = Authenticate(keys=KeyStore(keys_path), audit=broken)
    refused(policy, call(), INFER, "no credentials")
    assert "audit sink failed" in caplog.text


def test_no_credential_in_messages_audit_or_repr(policy, audit, key, signer, caplog):
    bad_key = key[:-1] + ("B" if key[-1] != "B" else "C")
    expired = signer.token(exp=int(time.time()) - 3600)
    for credential in (bad_key, expired, "fk_0123abcd_" + "z" * 43):
        ctx = call(f"Bearer {credential}")
        with pytest.raises(AuthenticationError) as caught:
            policy.check(ctx, INFER)
        assert credential not in str(caught.value) and credential not in repr(ctx)
        assert credential not in repr(caught.value.__context__)
    for _, _, fields in audit.events:
        assert all(c not in str(fields) for c in (bad_key, expired))
    assert key not in repr(policy) and key not in caplog.text


# ------------------------------------------------------------ client certificates (mTLS)


def with_certificate(credentials=None, certificate="client-ci"):
    return CallContext("req-1", "rest", "http11", credentials=credentials,
                       certificate=certificate)


def test_a_verified_certificate_is_the_principal_only_when_configured(keys_path, key, audit):
    grants = (("infer", "*"),)
    on = Authenticate(keys=KeyStore(keys_path), certificate_grants=grants, audit=audit)
    ctx = with_certificate()
    on.check(ctx, INFER)
    assert (ctx.principal, ctx.grants) == ("cert:client-ci", grants)
    off = Authenticate(keys=KeyStore(keys_path), audit=audit)
    refused(off, with_certificate(), INFER, "no credentials")
    refused(on, with_certificate(certificate=None), INFER, "no credentials")


def test_a_bearer_credential_beats_the_certificate(keys_path, key, audit):
    policy = Authenticate(keys=KeyStore(keys_path), certificate_grants=(("admin", "*"),),
                          audit=audit)
    ctx = with_certificate(f"Bearer {key}")
    policy.check(ctx, INFER)
    assert ctx.principal == "key:ci"
    refused(policy, with_certificate("Bearer fk_0123abcd_" + "A" * 43), INFER,
            "unknown or revoked")


def test_certificates_alone_are_a_way_to_authenticate():
    ctx = with_certificate()
    Authenticate(certificate_grants=()).check(ctx, INFER)
    assert ctx.principal == "cert:client-ci" and ctx.grants == ()
    with pytest.raises(ConfigError, match="client certificates"):
        Authenticate()
