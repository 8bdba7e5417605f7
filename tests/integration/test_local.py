"""ferry.load: a stored version run inside the program (issue 19 item 4).

A logistic regression is trained here on scikit-learn's digits, imported as an ONNX version,
and loaded back with ``ferry.load``: its answers are scikit-learn's, bad input gets the
server's messages, a tampered or missing version is refused, and it runs from many threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

# ruff: noqa: E402
from extras import require

require("sklearn")
require("skops")

import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import ferry
from ferry.errors import (
    InputError,
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    UnavailableError,
)
from ferry.formats import import_model
from ferry.repository import Repository
from ferry.signature import Signature


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def classifier(digits):
    x, y = digits
    return LogisticRegression(max_iter=300).fit(x[:1200], y[:1200])


@pytest.fixture(scope="module")
def repo(tmp_path_factory, classifier) -> Repository:
    root = tmp_path_factory.mktemp("local")
    path = root / "digits.skops"
    sio.dump(classifier, path)
    repository = Repository(root / "repo")
    import_model(repository, path, "digits")  # version 1
    import_model(repository, path, "digits")  # version 2: "digits" means this one
    return repository


def _probabilities(outputs: dict[str, np.ndarray]) -> np.ndarray:
    (name,) = [n for n, a in outputs.items() if a.dtype == np.float32]
    return outputs[name]


def test_load_predicts_like_scikit_learn(repo, digits, classifier):
    x, _ = digits
    rows = x[1200:1300]
    with ferry.load(repo.root, "digits:1") as model:
        assert (model.name, model.version) == ("digits", 1)
        assert isinstance(model.signature, Signature)
        assert model.signature.input_names == ["input"] or len(model.signature.inputs) == 1
        by_array = model.predict(rows)
        by_dict = model.predict({model.signature.inputs[0].name: rows})
        by_lists = model.predict(rows.tolist())  # nested lists are converted, as on the wire
    np.testing.assert_allclose(_probabilities(by_array), classifier.predict_proba(rows),
                               atol=1e-5)
    for outputs in (by_dict, by_lists):
        for name, array in by_array.items():
            np.testing.assert_array_equal(outputs[name], array)
    assert model.closed


def test_latest_version_and_selected_outputs(repo, digits):
    x, _ = digits
    with ferry.load(str(repo.root), "digits") as model:
        assert model.version == 2
        first = model.signature.output_names[0]
        outputs = model.predict(x[:3], outputs=[first])
    assert list(outputs) == [first] and len(outputs[first]) == 3


def test_bad_input_gets_the_servers_messages(repo, digits):
    x, _ = digits
    with ferry.load(repo.root, "digits:1") as model:
        name = model.signature.inputs[0].name
        with pytest.raises(InputError) as wrong_shape:
            model.predict(x[0])  # one row without its batch axis
        assert str(wrong_shape.value) == (f"input {name!r}: expected FP32 with shape [-1, 64], "
                                          "got shape [64]")
        with pytest.raises(InputError, match=r"expected FP32 values, got strings"):
            model.predict([["a"] * 64])
        with pytest.raises(InputError, match=rf"unknown input 'pixels'; the model's inputs are "
                                             rf"{name!r}"):
            model.predict({"pixels": x[:1]})
        with pytest.raises(InputError, match=rf"missing input {name!r}: expected FP32"):
            model.predict({})
        with pytest.raises(InputError, match=r"unknown output 'nope'; the model's outputs are"):
            model.predict(x[:1], outputs=["nope"])
        with pytest.raises(InputError, match=r"got FP64 with shape \[1, 64\]"):
            model.predict({name: x[:1].astype(np.float64)})
    with pytest.raises(UnavailableError, match=r"model digits:1 is closed"):
        model.predict(x[:1])


def test_wrong_names_are_refused_with_what_exists(repo, tmp_path):
    with pytest.raises(NotFoundError, match=r"model 'digit' is not in repository .*"
                                            r"\(models: digits\)"):
        ferry.load(repo.root, "digit")
    with pytest.raises(NotFoundError, match=r"model 'digits' has no version 9 \(versions: 1, 2\)"):
        ferry.load(repo.root, "digits:9")
    with pytest.raises(InputError, match=r"invalid model name '\.\./x'"):
        ferry.load(repo.root, "../x")
    with pytest.raises(NotFoundError, match=r"no model repository or bundle at"):
        ferry.load(tmp_path / "nothing")


def test_a_tampered_version_is_refused(repo, tmp_path):
    import shutil

    copy = Repository(tmp_path / "copy")
    shutil.copytree(repo.root / "digits" / "1", copy.root / "digits" / "1")
    artifact = copy.root / "digits" / "1" / copy.manifest("digits:1").artifact
    artifact.chmod(0o644)
    with artifact.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IntegrityError, match=r"model digits:1: file 'model.onnx' does not match "
                                             r"its recorded sha256"):
        ferry.load(copy.root)


def test_one_model_may_be_left_unnamed_several_may_not(repo, tmp_path):
    with ferry.load(repo.root) as model:  # the only model, its latest version
        assert model.version == 2
    import shutil

    two = tmp_path / "two"
    shutil.copytree(repo.root / "digits", two / "digits")
    shutil.copytree(repo.root / "digits", two / "other")
    with pytest.raises(NotFoundError, match=r"holds 2 models \(digits, other\); name one"):
        ferry.load(two)


def test_predict_from_many_threads_while_closing(repo, digits):
    x, _ = digits
    model = ferry.load(repo.root, "digits:1")
    expected = model.predict(x[:50])
    errors: list[BaseException] = []
    answers = []
    start = threading.Barrier(9)

    def worker(offset: int) -> None:
        start.wait()
        for i in range(200):
            row = (offset + i) % 50
            try:
                out = model.predict(x[row:row + 1])
            except UnavailableError:
                return  # closed under us: the only error allowed
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)
                return
            # One row alone may round differently from the same row in a batch of 50.
            answers.append(all(np.allclose(out[n], expected[n][row:row + 1], atol=1e-6)
                               for n in out))

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    while len(answers) < 400:
        threading.Event().wait(0.001)
    model.close()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert len(answers) >= 400 and all(answers)


def test_a_native_runtime_without_its_extra_names_it(tmp_path, classifier):
    """A scikit-learn version served natively (skops) needs ferry[sklearn]: hidden here."""
    from ferry.formats import ImportOptions

    path = tmp_path / "digits.skops"
    sio.dump(classifier, path)
    repository = Repository(tmp_path / "repo")
    manifest = import_model(repository, path, "native", options=ImportOptions(native=True))
    assert manifest.runtime == "sklearn"
    script = f"""
import sys
sys.modules["skops"] = None  # as if ferry[sklearn] were not installed
sys.modules["sklearn"] = None
import ferry
from ferry.errors import MissingDependencyError
try:
    ferry.load({str(repository.root)!r}, "native")
except MissingDependencyError as exc:
    print(exc.message, "|", exc.hint)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(ferry.__file__).parents[1])})
    assert result.returncode == 0, result.stderr
    assert "ferry[sklearn]" in result.stdout and "pip install 'ferry[sklearn]'" in result.stdout
    assert MissingDependencyError.__name__  # the error class the script caught
