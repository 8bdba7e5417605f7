"""ferry.ray.deploy refuses bad arguments in one line before Ray starts anything.

Each refusal below happens before ``import ray``: the test asserts Ray was never
initialized by it (when Ray is installed) and that the message names the problem.
"""

from __future__ import annotations

import sys

import pytest

import ferry.ray
from ferry.errors import ConfigError, MissingDependencyError, NotFoundError
from ferry.repository import Repository
from ferry.settings import load_settings


def _ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture
def repo(tmp_path) -> Repository:
    """A repository with a stand-in model directory (no version): enough to refuse."""
    repo = Repository(tmp_path / "repo")
    (repo.root / "digits").mkdir(parents=True)
    return repo


@pytest.mark.parametrize(("kwargs", "error", "phrase"), [
    ({"num_replicas": 0}, ConfigError, "num_replicas must be at least 1, got 0"),
    ({"min_replicas": 5, "max_replicas": 2}, ConfigError, "got min 5, max 2"),
    ({"max_ongoing_requests": 0}, ConfigError, "max_ongoing_requests must be at least 1"),
    ({"target_ongoing_requests": 0}, ConfigError, "target_ongoing_requests must be above 0"),
    ({"models": ["nosuch"]}, NotFoundError, "model 'nosuch' is not in repository"),
])
def test_bad_arguments_are_refused_before_ray(repo, kwargs, error, phrase):
    with pytest.raises(error, match=phrase):
        ferry.ray.deploy(repo.root, **kwargs)
    assert not _ray_started()


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ferry.ray.deploy(tmp_path / "nowhere")
    assert not _ray_started()


def test_tls_settings_are_refused_on_ray(repo, tmp_path):
    settings = load_settings(None, repository=repo.root, security={
        "tls_cert_file": tmp_path / "server.pem", "tls_key_file": tmp_path / "server.key"})
    with pytest.raises(ConfigError, match="TLS .* does not apply on Ray") as caught:
        ferry.ray.deploy(settings=settings)
    assert "ingress or load balancer" in (caught.value.hint or "")
    assert not _ray_started()


def test_without_ray_the_error_names_the_extra(tmp_path, monkeypatch):
    from builders import mlp_onnx
    from ferry.formats import import_model

    repo = Repository(tmp_path / "real")
    import_model(repo, mlp_onnx(tmp_path / "mlp.onnx"), "mlp")
    real = ferry.ray.importlib.util.find_spec
    monkeypatch.setattr(ferry.ray.importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("ray") else real(name, *a))
    with pytest.raises(MissingDependencyError) as caught:
        ferry.ray.deploy(repo.root)
    assert "pip install 'ferry[ray]'" in (caught.value.hint or "")


def test_relative_paths_are_made_absolute_for_the_replicas(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, repository="model-repository", security={
        "api_keys_file": "keys.json", "audit_log": "audit.jsonl",
        "trusted_keys_file": tmp_path / "trusted"})
    fixed = ferry.ray.absolute_paths(settings)
    assert fixed.repository == tmp_path / "model-repository"
    assert fixed.security.api_keys_file == tmp_path / "keys.json"
    assert fixed.security.audit_log == str(tmp_path / "audit.jsonl")
    assert fixed.security.trusted_keys_file == tmp_path / "trusted"
    assert fixed.security.jwt_jwks_file is None
    assert ferry.ray.absolute_paths(load_settings(
        None, security={"audit_log": "-"})).security.audit_log == "-"  # stderr stays
