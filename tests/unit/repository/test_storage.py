"""ferry.repository.storage: which roots are object storage, and where their cache goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.errors import InputError, IntegrityError
from ferry.repository import Repository
from ferry.repository.storage import default_cache_dir, remote_url, safe_relative


@pytest.mark.parametrize(("root", "url"), [
    ("s3://models", "s3://models"),
    ("s3://models/", "s3://models"),
    ("s3://models/prod/", "s3://models/prod"),
    ("s3://models/a/b", "s3://models/a/b"),
    (Path("s3://models/prod"), "s3://models/prod"),  # a Path collapses '//' to '/'
    ("model-repository", None),
    (Path("/srv/models"), None),
    ("s3x://models", None),
])
def test_remote_url(root, url):
    assert remote_url(root) == url


@pytest.mark.parametrize("root", ["s3://", "s3:///prefix", "s3:models", "s3:/models"])
def test_a_url_without_bucket_is_refused(root):
    with pytest.raises(InputError, match=r"invalid repository URL .*expected s3://BUCKET"):
        remote_url(root)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FERRY_CACHE_DIR", str(tmp_path / "c"))
    one, two = default_cache_dir("s3://a/x"), default_cache_dir("s3://a/y")
    assert one.parent == tmp_path / "c" / "repositories" and one != two
    monkeypatch.delenv("FERRY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir("s3://a/x").parent == tmp_path / "xdg" / "ferry" / "repositories"


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "./a"])
def test_unsafe_manifest_paths_are_refused(rel):
    with pytest.raises(IntegrityError, match="not a plain relative path"):
        safe_relative(rel, "m:1")


def test_plain_manifest_paths_pass():
    assert str(safe_relative("weights/model.onnx", "m:1")) == "weights/model.onnx"


def test_a_local_repository_is_unchanged(tmp_path):
    repo = Repository(tmp_path / "r")
    assert (repo.storage, repo.location, repo.root) == (None, str(tmp_path / "r"), tmp_path / "r")
    assert not repo.exists()
