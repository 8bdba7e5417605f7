"""Authorize: roles per call kind, implication, patterns, 401 vs 403, no existence leak."""

from __future__ import annotations

import timeit

import pytest

from ferry.call import CallContext, internal_call
from ferry.errors import AuthenticationError, PermissionDeniedError
from ferry.policy import Action, Kind
from ferry.security.roles import Authorize


def _call(grants: tuple[tuple[str, str], ...] | None, principal: str | None = "alice",
          protocol: str = "rest") -> CallContext:
    call = CallContext("rid-1", protocol, "asgi", peer="127.0.0.1:5000",  # type: ignore[arg-type]
                       credentials="Bearer sekrit-token")
    call.principal = principal
    call.grants = grants
    return call


READ, INFER, ADMIN = ("read", "mlp"), ("infer", "mlp"), ("admin", "mlp")

# (grant, kind, allowed on model "mlp")
TABLE = [
    (READ, Kind.MODEL_METADATA, True), (READ, Kind.MODEL_READY, True),
    (READ, Kind.INFER, False), (READ, Kind.LOAD, False), (READ, Kind.UNLOAD, False),
    (INFER, Kind.MODEL_METADATA, True), (INFER, Kind.MODEL_READY, True),
    (INFER, Kind.INFER, True), (INFER, Kind.LOAD, False), (INFER, Kind.UNLOAD, False),
    (ADMIN, Kind.MODEL_METADATA, True), (ADMIN, Kind.INFER, True),
    (ADMIN, Kind.LOAD, True), (ADMIN, Kind.UNLOAD, True),
]


@pytest.mark.parametrize(("grant", "kind", "allowed"), TABLE,
                         ids=[f"{g[0]}-{k.value}" for g, k, _ in TABLE])
def test_each_role_covers_its_kinds_and_the_roles_it_implies(grant, kind, allowed):
    policy = Authorize()
    call = _call((grant,))
    if allowed:
        policy.check(call, Action(kind, "mlp"))
    else:
        with pytest.raises(PermissionDeniedError) as caught:
            policy.check(call, Action(kind, "mlp"))
        assert f"{kind.value} of model 'mlp' is not allowed" in caught.value.message


@pytest.mark.parametrize("kind", [Kind.MODEL_METADATA, Kind.INFER, Kind.LOAD])
def test_a_grant_on_one_model_covers_no_other(kind):
    with pytest.raises(PermissionDeniedError):
        Authorize().check(_call((("admin", "mlp"),)), Action(kind, "mlp2"))


def test_patterns_are_shell_style_on_the_whole_name_and_case_sensitive():
    policy = Authorize()
    call = _call((("infer", "digits*"), ("read", "fraud-v[0-9]")))
    policy.check(call, Action(Kind.INFER, "digits"))
    policy.check(call, Action(Kind.INFER, "digits-large", "3"))
    policy.check(call, Action(Kind.MODEL_METADATA, "fraud-v2"))
    for kind, model in [(Kind.INFER, "Digits"), (Kind.INFER, "my-digits"),
                        (Kind.INFER, "fraud-v2"), (Kind.MODEL_METADATA, "fraud-v10")]:
        with pytest.raises(PermissionDeniedError):
            policy.check(call, Action(kind, model))


def test_the_index_needs_read_on_star_and_server_metadata_any_read():
    policy = Authorize()
    scoped = _call((("admin", "mlp"),))
    policy.check(scoped, Action(Kind.SERVER_METADATA))
    with pytest.raises(PermissionDeniedError, match=r"index is not allowed .*'\*'"):
        policy.check(scoped, Action(Kind.INDEX))
    with pytest.raises(PermissionDeniedError):  # a pattern matching everything is not '*'
        policy.check(_call((("read", "*s"), ("read", "m*"))), Action(Kind.INDEX))
    for role in ("read", "infer", "admin"):
        policy.check(_call(((role, "*"),)), Action(Kind.INDEX))


def test_health_is_open_without_a_principal_and_needs_any_grant_with_one():
    policy = Authorize()
    for kind in (Kind.LIVE, Kind.READY):
        policy.check(_call(None, principal=None), Action(kind))
        policy.check(_call((("read", "mlp"),)), Action(kind))
        with pytest.raises(PermissionDeniedError):
            policy.check(_call(()), Action(kind))


@pytest.mark.parametrize("kind", [Kind.SERVER_METADATA, Kind.INDEX, Kind.MODEL_METADATA,
                                  Kind.INFER, Kind.LOAD, Kind.UNLOAD])
def test_no_principal_on_a_call_that_needs_one_is_401(kind):
    with pytest.raises(AuthenticationError, match="needs credentials"):
        Authorize().check(_call(None, principal=None), Action(kind, "mlp"))


def test_internal_calls_pass():
    call = internal_call("repository-watch")
    Authorize().check(call, Action(Kind.LOAD, "anything"))
    Authorize().check(_call(None, principal=None, protocol="internal"),
                      Action(Kind.UNLOAD, "x"))


def test_unknown_roles_in_grants_give_nothing():
    with pytest.raises(PermissionDeniedError):
        Authorize().check(_call((("root", "*"),)), Action(Kind.MODEL_METADATA, "mlp"))


def test_the_refusal_is_the_same_whatever_model_is_named_but_its_name():
    # The policy knows no repository: the answer can depend on nothing but the request.
    policy = Authorize()
    call = _call((("infer", "mlp"),))
    messages = []
    for model in ("hidden", "missing"):
        with pytest.raises(PermissionDeniedError) as caught:
            policy.check(call, Action(Kind.INFER, model))
        messages.append(caught.value.message.replace(model, "NAME"))
    assert messages[0] == messages[1]


def test_refusals_are_audited_without_credentials():
    seen: list[tuple[str, CallContext, dict[str, object]]] = []
    policy = Authorize(audit=lambda event, call, **fields: seen.append((event, call, fields)))
    call = _call((("read", "mlp"),))
    with pytest.raises(PermissionDeniedError):
        policy.check(call, Action(Kind.UNLOAD, "mlp", "2"))
    policy.check(call, Action(Kind.MODEL_METADATA, "mlp"))
    assert len(seen) == 1
    event, audited, fields = seen[0]
    assert (event, audited, fields["model"], fields["version"], fields["outcome"]) == (
        "permission_denied", call, "mlp", "2", "refused")
    assert "sekrit" not in repr(fields)


def test_decisions_follow_the_grants_even_when_a_tuple_id_is_reused():
    policy = Authorize()
    policy.check(_call((("infer", "a"),)), Action(Kind.INFER, "a"))
    # A new tuple (perhaps at the same address once the first is gone) is compiled anew.
    with pytest.raises(PermissionDeniedError):
        policy.check(_call((("infer", "b"),)), Action(Kind.INFER, "a"))


def test_the_caches_stay_bounded():
    policy = Authorize()
    grants = (("infer", "m*"),)
    for i in range(3000):
        policy.check(_call(grants), Action(Kind.INFER, f"m{i}"))
        policy.check(_call(((("read", f"x{i}")),)), Action(Kind.LIVE))
    compiled = policy._compiled[id(grants)]
    assert len(compiled.decided) <= 1024
    assert len(policy._compiled) <= 1024


def test_a_check_is_fast():
    policy = Authorize()
    call = _call((("infer", "digits*"), ("read", "fraud")))
    action = Action(Kind.INFER, "digits-large")
    policy.check(call, action)
    per_call = min(timeit.repeat(lambda: policy.check(call, action), number=2000,
                                 repeat=3)) / 2000
    assert per_call < 50e-6  # ~1 µs measured; generous for a shared CI machine
