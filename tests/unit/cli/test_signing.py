"""``ferry signing-key new|public``, ``ferry sign``, ``ferry verify`` and ``ferry show``'s line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from ferry.cli import main
from ferry.repository import Manifest, Repository, SourceInfo, now_utc
from ferry.signature import Signature, TensorSpec

SIG = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),),
                outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),))


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo(tmp_path) -> Repository:
    repo = Repository(tmp_path / "repo")
    for payload in (b"one", b"two"):
        with repo.stage() as work:
            (work / "model.onnx").write_bytes(payload)
            repo.commit(work, Manifest(
                name="m", version=0, format="onnx", runtime="onnxruntime", platform="p",
                artifact="model.onnx", signature=SIG, files={}, created=now_utc(),
                source=SourceInfo(filename="m", sha256="0" * 64, size=3, format="onnx")))
    return repo


def test_make_a_key_sign_the_latest_version_and_verify_it(capsys, repo, tmp_path):
    key = tmp_path / "release.pem"
    code, out, err = run(capsys, "signing-key", "new", str(key), "--comment", "release ci")
    assert code == 0, err
    line = out.strip()
    assert line.startswith("ed25519 ") and line.endswith(" release ci")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and "PRIVATE" not in out + err
    key_id = err.split("wrote private key ")[1].split()[0]
    trusted = tmp_path / "trusted-keys"
    trusted.write_text(line + "\n")
    code, out, _ = run(capsys, "signing-key", "public", str(key), "--comment", "release ci")
    assert (code, out.strip()) == (0, line)

    root = ["--repo", str(repo.root)]
    code, _, err = run(capsys, *root, "sign", "m", "--key", str(key))
    assert code == 0 and f"signed m:2 with key {key_id}" in err
    code, out, err = run(capsys, *root, "verify", "m:2", "--trusted-keys", str(trusted))
    assert code == 0, err
    assert f"m:2 is signed by trusted key {key_id} (release ci)" in out
    code, out, _ = run(capsys, *root, "verify", "m:2", "--trusted-keys", str(trusted), "--json")
    assert json.loads(out) == {"model": "m", "version": 2, "key_id": key_id,
                               "comment": "release ci"}
    code, out, _ = run(capsys, *root, "show", "m:2")
    assert code == 0 and f"signed    by key(s) {key_id} (" in out

    code, _, err = run(capsys, *root, "verify", "m:1", "--trusted-keys", str(trusted))
    assert code == 2 and "error: model m:1 is not signed" in err
    code, out, _ = run(capsys, *root, "show", "m:1")
    assert code == 0 and "signed    no (unsigned)" in out


def test_the_trusted_keys_file_comes_from_the_environment(capsys, repo, tmp_path, monkeypatch):
    key = tmp_path / "k.pem"
    code, out, _ = run(capsys, "signing-key", "new", str(key))
    assert code == 0
    (tmp_path / "tk").write_text(out)
    assert out.strip().endswith(" k")  # the comment defaults to the key file's stem
    monkeypatch.setenv("FERRY_SECURITY__TRUSTED_KEYS_FILE", str(tmp_path / "tk"))
    assert run(capsys, "--repo", str(repo.root), "sign", "m:1", "-k", str(key))[0] == 0
    assert run(capsys, "--repo", str(repo.root), "verify", "m:1")[0] == 0
    assert run(capsys, "verify", "m:1", "--repository", str(repo.root))[0] == 0


def test_a_passphrase_from_the_environment_encrypts_the_key(capsys, repo, tmp_path,
                                                           monkeypatch):
    key = tmp_path / "k.pem"
    monkeypatch.setenv("FERRY_SIGNING_KEY_PASSPHRASE", "s3cret-passphrase")
    code, out, err = run(capsys, "signing-key", "new", str(key))
    assert code == 0 and b"ENCRYPTED" in key.read_bytes()
    assert run(capsys, "--repo", str(repo.root), "sign", "m", "-k", str(key))[0] == 0
    monkeypatch.delenv("FERRY_SIGNING_KEY_PASSPHRASE")
    code, out2, err2 = run(capsys, "--repo", str(repo.root), "sign", "m", "-k", str(key))
    assert code == 2 and "is encrypted: give its passphrase" in err2
    assert "s3cret-passphrase" not in out + err + out2 + err2


def test_signing_key_new_never_overwrites(capsys, tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("precious")
    code, _, err = run(capsys, "signing-key", "new", str(key))
    assert code == 2 and "already exists: ferry never overwrites a key" in err
    assert key.read_text() == "precious"


def test_the_cli_and_an_unsigned_repository_do_not_import_cryptography():
    code = ("import sys; from ferry.cli import commands; from ferry.repository import Repository\n"
            "Repository('nowhere').models()\n"
            "assert 'cryptography' not in sys.modules, 'cryptography imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
