"""Issue 15 item 4: signed versions — Ed25519 over the manifest, refused unless trusted."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from ferry.errors import ConfigError, InputError, IntegrityError, UntrustedArtifactError
from ferry.repository import (
    SIGNATURE_NAME,
    Manifest,
    Repository,
    SigningKey,
    SourceInfo,
    TrustedKeys,
    now_utc,
)
from ferry.repository.signing import CONTEXT, key_id, parse_trusted_keys
from ferry.signature import Signature, TensorSpec

SIG = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),),
                outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),))


def add_version(repo: Repository, name: str = "m", payload: bytes = b"abc") -> int:
    draft = Manifest(name=name, version=0, format="onnx", runtime="onnxruntime",
                     platform="onnx_onnxv1", artifact="model.onnx", signature=SIG, files={},
                     source=SourceInfo(filename="m.onnx", sha256="0" * 64, size=3,
                                       format="onnx"),
                     created=now_utc())
    with repo.stage() as work:
        (work / "model.onnx").write_bytes(payload)
        return repo.commit(work, draft).version


def writable(path: Path) -> Path:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return path


def trust(tmp_path: Path, *keys: SigningKey, name: str = "trusted-keys") -> TrustedKeys:
    path = tmp_path / name
    path.write_text("# release keys\n\n" + "".join(
        key.public_line(f"key-{i}") + "\n" for i, key in enumerate(keys)))
    return TrustedKeys(path)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other() -> SigningKey:
    return SigningKey.generate()


def test_a_signed_version_opens_with_trusted_keys_and_names_its_signer(repo, tmp_path, key):
    add_version(repo)
    signature = repo.sign("m:1", key)
    assert signature.key_id == key.key_id == key_id(key.public_raw)
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    assert guarded.open("m:1").manifest.version == 1
    assert str(guarded.verify_signature("m:1", guarded.trusted_keys)) == f"{key.key_id} (key-0)"
    # manifest.sig is not an unexpected file to a repository that does not check signatures
    assert repo.open("m:1").manifest.version == 1
    written = json.loads((repo.root / "m" / "1" / SIGNATURE_NAME).read_bytes())
    (entry,) = written["signatures"]
    assert entry["algorithm"] == "ed25519" and entry["key_id"] == key.key_id
    # the documented message: CONTEXT + the exact manifest bytes, checkable without ferry
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(key.public_raw).verify(
        base64.b64decode(entry["signature"]),
        CONTEXT + (repo.root / "m" / "1" / "manifest.json").read_bytes())


def test_an_unsigned_version_is_refused_naming_it(repo, tmp_path, key):
    add_version(repo)
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(UntrustedArtifactError, match=r"model m:1 is not signed") as info:
        guarded.open("m")
    assert "ferry sign m:1 --key" in (info.value.hint or "")


def test_a_version_signed_by_an_unknown_key_is_refused(repo, tmp_path, key, other):
    add_version(repo)
    repo.sign("m:1", other)
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(UntrustedArtifactError,
                       match=rf"m:1 is signed only by key\(s\) not in the trusted keys file: "
                             rf"{other.key_id}"):
        guarded.open("m:1")


def test_a_manifest_changed_after_signing_is_refused(repo, tmp_path, key):
    add_version(repo)
    repo.sign("m:1", key)
    manifest = writable(repo.root / "m" / "1" / "manifest.json")
    data = json.loads(manifest.read_bytes())
    data["labels"] = ["forged"]  # still a valid manifest, and the files still match it
    manifest.write_text(json.dumps(data))
    assert repo.open("m:1").manifest.labels == ["forged"]  # no trust required: not noticed
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(UntrustedArtifactError,
                       match=rf"model m:1: the signature by trusted key {key.key_id} \(key-0\) "
                             r"does not verify: manifest.json changed after it was signed"):
        guarded.open("m:1")


def test_an_altered_signature_is_refused(repo, tmp_path, key):
    add_version(repo)
    repo.sign("m:1", key)
    path = writable(repo.root / "m" / "1" / SIGNATURE_NAME)
    data = json.loads(path.read_bytes())
    raw = bytearray(base64.b64decode(data["signatures"][0]["signature"]))
    raw[0] ^= 1
    data["signatures"][0]["signature"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(data))
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(UntrustedArtifactError,
                       match=r"does not verify: the signature does not match manifest.json "
                             r"\(manifest.sig was altered\)"):
        guarded.open("m:1")


@pytest.mark.parametrize("content", [b"not json", b'{"signatures": 3}',
                                     b'{"signatures": [{"key_id": "x"}]}',
                                     b'{"signatures": [{"algorithm": "ed25519", "key_id": "x", '
                                     b'"manifest_sha256": "x", "signature": "!!", '
                                     b'"signed_at": "x"}]}'],
                         ids=["not-json", "no-list", "missing-fields", "not-base64"])
def test_a_corrupted_signature_file_is_refused(repo, tmp_path, key, content):
    add_version(repo)
    (repo.root / "m" / "1" / SIGNATURE_NAME).write_bytes(content)
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(UntrustedArtifactError,
                       match=r"model m:1: manifest.sig is not a valid signature file"):
        guarded.open("m:1")


def test_a_modified_model_file_is_caught_by_the_signed_hashes(repo, tmp_path, key):
    add_version(repo)
    repo.sign("m:1", key)
    writable(repo.root / "m" / "1" / "model.onnx").write_bytes(b"evil")
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(IntegrityError, match=r"model m:1: file 'model.onnx' does not match"):
        guarded.open("m:1")
    with pytest.raises(IntegrityError, match="'model.onnx'"):
        repo.sign("m:1", key)  # a damaged version is never signed


def test_a_signed_version_copied_under_another_number_is_refused(repo, tmp_path, key):
    add_version(repo)
    repo.sign("m:1", key)
    shutil.copytree(repo.root / "m" / "1", repo.root / "m" / "7")
    guarded = Repository(repo.root, trusted_keys=trust(tmp_path, key))
    with pytest.raises(IntegrityError, match=r"model m:7: manifest says m:1"):
        guarded.open("m:7")


def test_several_keys_sign_and_signing_again_replaces_that_keys_entry(repo, tmp_path, key,
                                                                      other):
    add_version(repo)
    repo.sign("m:1", key)
    repo.sign("m:1", other)
    repo.sign("m:1", key)
    assert sorted(s.key_id for s in repo.signatures("m:1")) == sorted([key.key_id,
                                                                       other.key_id])
    only_other = Repository(repo.root, trusted_keys=trust(tmp_path, other))
    assert only_other.verify_signature("m:1", only_other.trusted_keys).key_id == other.key_id
    assert not list((repo.root / ".staging").iterdir())  # the temporary file is gone


def test_commit_refuses_an_artifact_named_like_the_signature_file(repo):
    with repo.stage() as work, pytest.raises(IntegrityError, match="reserved name"):
        (work / "model.onnx").write_bytes(b"x")
        (work / SIGNATURE_NAME).write_bytes(b"x")
        repo.commit(work, Manifest(
            name="m", version=0, format="onnx", runtime="onnxruntime", platform="p",
            artifact="model.onnx", signature=SIG, files={}, created=now_utc(),
            source=SourceInfo(filename="m", sha256="0" * 64, size=1, format="onnx")))


def test_trusted_keys_are_reread_when_the_file_changes(repo, tmp_path, key, other):
    add_version(repo)
    repo.sign("m:1", other)
    keys = trust(tmp_path, key)
    guarded = Repository(repo.root, trusted_keys=keys)
    with pytest.raises(UntrustedArtifactError, match="not in the trusted keys file"):
        guarded.open("m:1")
    with keys.path.open("a") as handle:
        handle.write(other.public_line("added later") + "\n")
    assert guarded.open("m:1").manifest.version == 1


@pytest.mark.parametrize(("line", "why"), [
    ("-----BEGIN PRIVATE KEY----- Zm9vYmFy", "holds a PEM block"),
    ("ssh-rsa Zm9vYmFy comment", "expected 'ed25519 <base64 public key> [comment]'"),
    ("Zm9vYmFy", "expected 'ed25519"),
    ("ed25519 Zm9vYmFy", "the key is not the base64 of 32 bytes"),
    ("ed25519 Zm9vYmFy!!", "the key is not the base64 of 32 bytes"),
], ids=["pem", "other-algorithm", "no-key", "short", "not-base64"])
def test_a_bad_trusted_keys_line_is_named_by_number_and_never_quoted(line, why):
    with pytest.raises(ConfigError) as info:
        parse_trusted_keys(f"# ok\n\n{line}\n", "tk")
    assert f"trusted keys file 'tk', line 3: {why}" in info.value.message
    assert "Zm9vYmFy" not in str(info.value)


def test_an_empty_or_missing_trusted_keys_file_is_refused(tmp_path):
    (tmp_path / "empty").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="lists no key: every version would be refused"):
        TrustedKeys(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read it"):
        TrustedKeys(tmp_path / "missing")


def test_a_private_key_file_is_0600_never_overwritten_and_reads_back(tmp_path, key):
    path = tmp_path / "k.pem"
    key.write(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert SigningKey.read(path).key_id == key.key_id
    with pytest.raises(InputError, match="already exists: ferry never overwrites a key"):
        key.write(path)


def test_an_encrypted_private_key_needs_its_passphrase(tmp_path, key):
    path = tmp_path / "k.pem"
    key.write(path, b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert SigningKey.read(path, b"correct horse").key_id == key.key_id
    with pytest.raises(ConfigError, match="is encrypted: give its passphrase"):
        SigningKey.read(path)
    with pytest.raises(ConfigError, match="passphrase is wrong") as info:
        SigningKey.read(path, b"hunter2")
    assert "hunter2" not in str(info.value) and "correct horse" not in str(info.value)


def test_a_key_that_is_not_ed25519_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        SigningKey.read(path)
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(ConfigError, match="is not a PEM private key"):
        SigningKey.read(tmp_path / "junk.pem")
