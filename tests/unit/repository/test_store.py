from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ferry.errors import IntegrityError, NotFoundError
from ferry.repository import (
    VersionPolicy,
    read_manifest,
)
from repository_versions import add_version, commit_in_child, draft


def writable(path: Path) -> Path:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return path


def test_commit_numbers_versions_and_records_hashes(repo):
    first = add_version(repo)
    second = add_version(repo, payload=b"abcd", extra={"data/w.bin": b"w"})
    assert (first.version, second.version) == (1, 2)
    assert repo.versions("m") == [1, 2] and repo.models() == ["m"]
    assert set(second.files) == {"model.onnx", "data/w.bin"}
    assert second.files["model.onnx"].size == 4
    on_disk = read_manifest(repo.root / "m" / "2" / "manifest.json")
    assert on_disk == second
    assert json.loads((repo.root / "m" / "2" / "manifest.json").read_text())["version"] == 2


def test_committed_files_are_read_only(repo):
    add_version(repo)
    mode = (repo.root / "m" / "1" / "model.onnx").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_open_verifies_and_returns_the_artifact(repo):
    add_version(repo, payload=b"hello")
    stored = repo.open("m")
    assert stored.artifact_path.read_bytes() == b"hello"
    assert stored.manifest.version == 1


def test_tampered_file_is_refused_by_name(repo):
    add_version(repo)
    writable(repo.root / "m" / "1" / "model.onnx").write_bytes(b"evil")
    with pytest.raises(IntegrityError, match="model m:1: file 'model.onnx' does not match its recorded sha256"):
        repo.open("m:1")


def test_missing_extra_and_linked_files_are_refused(repo, tmp_path):
    add_version(repo, extra={"w.bin": b"w"})
    version_dir = repo.root / "m" / "1"
    os.unlink(version_dir / "w.bin")
    with pytest.raises(IntegrityError, match="file 'w.bin' is missing"):
        repo.open("m")
    add_version(repo)
    (repo.root / "m" / "2" / "notes.txt").write_text("x")
    with pytest.raises(IntegrityError, match="unexpected file 'notes.txt'"):
        repo.open("m:2")
    add_version(repo)
    target = repo.root / "m" / "3" / "model.onnx"
    (tmp_path / "other").write_bytes(b"abc")
    os.unlink(target)
    os.symlink(tmp_path / "other", target)
    with pytest.raises(IntegrityError, match="'model.onnx' is a symbolic link"):
        repo.open("m:3")


def test_renamed_version_directory_is_refused(repo):
    add_version(repo)
    os.rename(repo.root / "m" / "1", repo.root / "m" / "7")
    with pytest.raises(IntegrityError, match="manifest says m:1"):
        repo.open("m:7")


def test_corrupt_manifest_is_refused(repo):
    add_version(repo)
    writable(repo.root / "m" / "1" / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="manifest.json is not valid JSON"):
        repo.open("m")


def test_unknown_models_and_versions_list_what_exists(repo):
    add_version(repo, "a")
    with pytest.raises(NotFoundError, match=r"model 'b' is not in repository .*\(models: a\)"):
        repo.open("b")
    with pytest.raises(NotFoundError, match=r"model 'a' has no version 9 \(versions: 1\)"):
        repo.open("a:9")


def test_listing_ignores_staging_locks_and_config(repo):
    add_version(repo, "a")
    (repo.root / "a" / "config.toml").write_text("[batching]\n")
    (repo.root / "a" / "notaversion").mkdir()
    (repo.root / "empty").mkdir()
    assert repo.models() == ["a"]
    assert repo.versions("a") == [1]
    assert {p.name for p in repo.root.iterdir()} >= {".staging", ".locks"}


def test_a_failed_import_leaves_nothing(repo):
    with pytest.raises(RuntimeError), repo.stage() as work:
        (work / "model.onnx").write_bytes(b"x")
        raise RuntimeError("conversion failed")
    assert repo.models() == []
    assert list((repo.root / ".staging").iterdir()) == []


def test_commit_refuses_missing_artifact_and_symlinks(repo, tmp_path):
    with repo.stage() as work, pytest.raises(IntegrityError, match="was not written"):
        repo.commit(work, draft())
    (tmp_path / "outside").write_bytes(b"secret")
    with repo.stage() as work:
        (work / "model.onnx").write_bytes(b"x")
        os.symlink(tmp_path / "outside", work / "link.bin")
        with pytest.raises(IntegrityError, match="'link.bin' is a symbolic link"):
            repo.commit(work, draft())
    assert repo.models() == []


def test_leftovers_of_dead_writers_are_swept(repo):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = repo.root / ".staging" / f"{dead.stdout.strip()}-abc"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    add_version(repo)
    assert not stale.exists()


def test_delete_one_version_then_all(repo):
    for _ in range(3):
        add_version(repo)
    assert repo.delete("m:2") == [2]
    assert repo.versions("m") == [1, 3]
    assert add_version(repo).version == 4, "numbers are never reused"
    assert repo.delete("m:4") == [4]
    assert add_version(repo).version == 5, "not even the latest number"
    assert repo.delete("m") == [1, 3, 5]
    assert repo.models() == [] and not (repo.root / "m").exists()
    with pytest.raises(NotFoundError):
        repo.delete("m")


def test_select_uses_version_policy(repo):
    for _ in range(3):
        add_version(repo)
    assert repo.select("m", VersionPolicy.parse("latest:2")) == [2, 3]



def test_concurrent_imports_get_distinct_versions(repo):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        versions = pool.starmap(commit_in_child,
                                [(str(repo.root), f"p{i}".encode()) for i in range(8)])
    assert sorted(versions) == list(range(1, 9))
    payloads = {repo.open(f"m:{v}").artifact_path.read_bytes() for v in versions}
    assert payloads == {f"p{i}".encode() for i in range(8)}
