"""Grants: ``role:pattern`` strings parsed strictly into the pairs ``call.grants`` holds."""

from __future__ import annotations

import pytest

from ferry.errors import AuthenticationError, ConfigError, InputError
from ferry.security.grants import Role, format_grant, parse_grant, parse_grants


def test_parse_grant_gives_plain_string_pairs():
    grant = parse_grant("infer:digits*")
    assert grant == ("infer", "digits*")
    assert type(grant[0]) is str  # plain strings, as call.grants and roles.py expect
    assert parse_grant(" read:* ") == ("read", "*")
    assert parse_grant("admin:fraud-v[0-9]") == ("admin", "fraud-v[0-9]")


@pytest.mark.parametrize(("text", "phrase"), [
    ("infer", "has no ':'"),
    ("infr:digits", "unknown role 'infr'"),
    ("INFER:digits", "unknown role"),
    ("infer:", "invalid model-name pattern"),
    ("infer:a b", "invalid model-name pattern"),
    ("read:../etc", "invalid model-name pattern"),
    ("read:" + "x" * 129, "invalid model-name pattern"),
])
def test_bad_grants_are_refused_by_name(text, phrase):
    with pytest.raises(InputError) as caught:
        parse_grant(text)
    assert phrase in caught.value.message
    assert caught.value.hint


def test_the_error_class_follows_the_source():
    with pytest.raises(ConfigError):
        parse_grant("nope:x", error=ConfigError)
    with pytest.raises(AuthenticationError):
        parse_grants(["infer:x", "bad"], error=AuthenticationError)


def test_parse_grants_accepts_lists_and_strings_and_drops_duplicates():
    assert parse_grants(["infer:digits*", "read:*", "infer:digits*"]) == (
        ("infer", "digits*"), ("read", "*"))
    assert parse_grants("infer:a, read:b  admin:c") == (
        ("infer", "a"), ("read", "b"), ("admin", "c"))
    assert parse_grants([]) == ()


def test_roles_and_format():
    assert [role.value for role in Role] == ["read", "infer", "admin"]
    assert Role("infer") is Role.INFER
    assert format_grant(("infer", "digits*")) == "infer:digits*"
