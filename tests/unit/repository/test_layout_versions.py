from __future__ import annotations

import pytest

from ferry.errors import InputError
from ferry.repository import ModelRef, VersionPolicy, check_model_name, parse_version


@pytest.mark.parametrize("name", ["digits", "a", "My-Model_2.onnx", "0day", "x" * 128])
def test_valid_names(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../etc", "a/b", "a\\b", ".hidden", "-flag", "a..b", "sp ace", "x" * 129,
     "a\x00b", "é"],
    ids=["empty", "dot", "dotdot", "traversal", "slash", "backslash", "hidden", "dash",
         "inner-dotdot", "space", "too-long", "nul", "non-ascii"],
)
def test_path_tricks_are_refused(name):
    with pytest.raises(InputError, match="invalid model name"):
        check_model_name(name)


def test_versions_are_positive_integers():
    assert parse_version("3") == 3
    for bad in ("0", "-1", "01", "1.0", "latest", ""):
        with pytest.raises(InputError, match="versions are positive integers"):
            parse_version(bad)


def test_model_refs():
    assert ModelRef.parse("digits") == ModelRef("digits", None)
    assert ModelRef.parse("digits:4") == ModelRef("digits", 4)
    assert ModelRef.parse("digits:latest") == ModelRef("digits", None)
    assert str(ModelRef("digits", 4)) == "digits:4"
    with pytest.raises(InputError):
        ModelRef.parse("../x:1")
    with pytest.raises(InputError):
        ModelRef.parse("digits:x")


@pytest.mark.parametrize(
    ("text", "available", "chosen"),
    [
        ("latest", [1, 2, 3], [3]),
        ("latest:2", [1, 2, 3], [2, 3]),
        ("latest:5", [1, 2], [1, 2]),
        ("all", [3, 1, 2], [1, 2, 3]),
        ("1,3", [1, 2, 3], [1, 3]),
        ("3,9", [1, 2, 3], [3]),
        ("latest", [], []),
    ],
)
def test_version_policies(text, available, chosen):
    policy = VersionPolicy.parse(text)
    assert policy.select(available) == chosen
    assert VersionPolicy.parse(str(policy)) == policy


@pytest.mark.parametrize("text", ["newest", "latest:0", "latest:x", "", "1,a"])
def test_bad_policies(text):
    with pytest.raises(InputError, match="invalid version policy"):
        VersionPolicy.parse(text)
