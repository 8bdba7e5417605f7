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
