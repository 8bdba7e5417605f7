from __future__ import annotations

import pytest

from ferry import errors
from ferry.errors import ErrorCode, FerryError


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_is_exported_and_has_a_code():
    for cls in _subclasses(FerryError):
        assert cls.__name__ in errors.__all__, cls
        assert isinstance(cls.code, ErrorCode)


def test_tree_matches_the_documented_codes():
    assert errors.InputError.code is ErrorCode.INVALID_ARGUMENT
    assert errors.NotFoundError.code is ErrorCode.NOT_FOUND
    assert errors.RateLimitedError.code is ErrorCode.RESOURCE_EXHAUSTED
    assert errors.IntegrityError.code is ErrorCode.DATA_LOSS
    assert issubclass(errors.ParityError, errors.ArtifactError)
    assert errors.InternalError.code is ErrorCode.INTERNAL


def test_message_and_hint():
    exc = errors.InputError("bad x", hint="try y")
    assert exc.message == "bad x" and str(exc) == "bad x (try y)"
    assert str(errors.InputError("bad x")) == "bad x"


def test_missing_dependency_names_the_install_line():
    exc = errors.MissingDependencyError("importing torch models", "torch")
    assert "ferry[torch]" in exc.message
    assert exc.hint == "install them with: pip install 'ferry[torch]'"


@pytest.mark.parametrize("cls", [errors.RateLimitedError, errors.UnavailableError])
def test_retry_after(cls):
    assert cls("full", retry_after=2.5).retry_after == 2.5


def test_quote_name_shows_a_short_name_whole_and_cuts_a_long_one():
    """Issue 13: a 100,000-character name must not be echoed whole in a message."""
    assert errors.quote_name("mlp") == "'mlp'"
    assert errors.quote_name("m" * errors.NAME_MAX) == repr("m" * errors.NAME_MAX)
    long = errors.quote_name("x" * 100_000)
    assert long.startswith(repr("x" * errors.NAME_MAX))
    assert long.endswith(f"...({100_000 - errors.NAME_MAX} more characters)")
    assert len(long) < errors.NAME_MAX + 40
