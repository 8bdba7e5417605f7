"""Ensembles as pipelines (issue 19 item 2): a 3-model majority vote on the digits, with the
ensemble's accuracy on an eval set reported beside each member's, at import (``--eval``)
and by ``ferry pipeline eval``; average and weighted average too.

The members are real scikit-learn classifiers trained here on the bundled digits, stored
through skops and skl2onnx; every figure is checked against scikit-learn run by hand.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from extras import require
from ferry.call import INTERNAL
from ferry.cli import main
from ferry.engine import Engine
from ferry.inference import InferRequest, Tensor
from ferry.repository import Repository

sio = require("skops.io")
pytestmark = pytest.mark.timeout(300)

MEMBERS = ("logreg", "tree", "bayes")

VOTE = """kind = "pipeline"
description = "majority vote of three digits classifiers"
[steps.logreg]
model = "logreg"
inputs = "inputs.input"
[steps.tree]
model = "tree"
inputs = "inputs.input"
[steps.bayes]
model = "bayes"
inputs = "inputs.input"
[steps.vote]
transform = "vote"
labels = true
inputs = ["logreg.probabilities", "tree.probabilities", "bayes.probabilities"]
[outputs]
digit = "vote.index"
label = "vote.label"
"""


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, seed_data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    root = tmp_path_factory.mktemp("ensemble")
    repo_dir = root / "repo"
    models = {
        "logreg": LogisticRegression(max_iter=500),
        "tree": DecisionTreeClassifier(max_depth=6, random_state=0),
        "bayes": GaussianNB(),
    }
    for name, model in models.items():
        model.fit(seed_data.x_train, seed_data.y_train)
        sio.dump(model, root / f"{name}.skops")
        assert main(["--repo", str(repo_dir), "import", str(root / f"{name}.skops"),
                     "--name", name]) == 0
    np.savez(root / "eval.npz", input=seed_data.x_test, y=seed_data.y_test)
    (root / "vote.toml").write_text(VOTE)
    return Repository(repo_dir), root, models


def _vote_by_hand(probabilities: list[np.ndarray]) -> np.ndarray:
    """Majority of the members' top classes; a tie goes to the higher summed probability."""
    picks = np.stack([p.argmax(axis=1) for p in probabilities], axis=1)
    total = sum(probabilities)
    out = []
    for row, chosen in enumerate(picks):
        counts = np.bincount(chosen, minlength=10)
        best = np.flatnonzero(counts == counts.max())
        out.append(int(best[np.argmax(total[row, best])]))
    return np.array(out)


def test_vote_reports_each_members_accuracy_and_the_ensembles(capsys, ensemble, seed_data):
    repo, root, models = ensemble
    x, y = seed_data.x_test, seed_data.y_test
    probabilities = [models[name].predict_proba(x) for name in MEMBERS]
    member_accuracy = {name: float(np.mean(p.argmax(axis=1) == y))
                       for name, p in zip(MEMBERS, probabilities, strict=True)}
    vote_accuracy = float(np.mean(_vote_by_hand(probabilities) == y))
    assert len(set(member_accuracy.values())) == 3  # three different classifiers

    code = main(["--repo", str(repo.root), "pipeline", "create", str(root / "vote.toml"),
                 "--name", "digits-vote", "--eval", str(root / "eval.npz")])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = len(y)
    assert f"accuracy {vote_accuracy:.4f} on {rows} rows (the pipeline)" in out
    for name in MEMBERS:
        assert f"accuracy {member_accuracy[name]:.4f} on {rows} rows (step {name}: " \
               f"{name}:1)" in out

    assert main(["--repo", str(repo.root), "show", "digits-vote"]) == 0
    shown, _ = capsys.readouterr()
    assert f"note      accuracy {vote_accuracy:.4f} on {rows} rows (the pipeline)" in shown

    assert main(["--repo", str(repo.root), "pipeline", "eval", "digits-vote", "--eval",
                 str(root / "eval.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert report["rows"] == rows
    assert report["accuracy"] == pytest.approx(vote_accuracy, abs=1e-12)
    assert {sid: m["accuracy"] for sid, m in report["members"].items()} == pytest.approx(
        member_accuracy, abs=1e-12)

    async def served():
        engine = Engine(repo, models=["digits-vote"])
        await engine.start()
        try:
            return await engine.infer(INTERNAL, InferRequest(
                "digits-vote", [Tensor("input", "FP32", x.shape, x)]))
        finally:
            await engine.stop()

    answer = {t.name: t.data for t in asyncio.run(served()).outputs}
    np.testing.assert_array_equal(answer["digit"], _vote_by_hand(probabilities))
    assert [v.decode() for v in answer["label"]] == [str(d) for d in answer["digit"]]


@pytest.mark.parametrize("transform,extra", [("average", ""),
                                             ("weighted_average", "weights = [2, 1, 1]")])
def test_average_and_weighted_average(capsys, ensemble, seed_data, transform, extra):
    repo, root, models = ensemble
    x, y = seed_data.x_test, seed_data.y_test
    text = VOTE.replace('transform = "vote"\nlabels = true',
                        f'transform = "{transform}"\n{extra}')
    text = text.replace('digit = "vote.index"\nlabel = "vote.label"',
                        'probabilities = "vote.output"')
    (root / f"{transform}.toml").write_text(text)
    code = main(["--repo", str(repo.root), "import", str(root / f"{transform}.toml"),
                 "--name", f"digits-{transform.replace('_', '-')}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"stored pipeline digits-{transform.replace('_', '-')}:1 (4 steps)" in out
    weights = np.array([2.0, 1.0, 1.0]) if extra else np.ones(3)
    weights /= weights.sum()
    mean = sum(w * models[n].predict_proba(x) for w, n in zip(weights, MEMBERS, strict=True))
    assert main(["--repo", str(repo.root), "pipeline", "eval",
                 f"digits-{transform.replace('_', '-')}", "--eval", str(root / "eval.npz"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert report["accuracy"] == pytest.approx(float(np.mean(mean.argmax(axis=1) == y)),
                                               abs=1e-12)
    manifest = repo.manifest(f"digits-{transform.replace('_', '-')}")
    assert manifest.labels == [str(d) for d in range(10)]  # the members' shared labels


def test_import_with_eval(capsys, ensemble, tmp_path):
    repo, root, _ = ensemble
    code = main(["--repo", str(repo.root), "import", str(root / "vote.toml"), "--name",
                 "vote-again", "--eval", str(root / "eval.npz")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "stored pipeline vote-again:1 (4 steps)" in out
    assert "on 360 rows (the pipeline)" in out and "(step tree: tree:1)" in out
    code = main(["--repo", str(repo.root), "import", str(root / "tree.skops"), "--name",
                 "tree", "--eval", str(root / "eval.npz")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines()[0] == ("error: --eval applies to pipelines (a TOML file with kind "
                                   "= \"pipeline\"); tree.skops is not one")
    assert repo.versions("tree") == [1]


def test_eval_set_without_labels_is_one_line(capsys, ensemble, seed_data, tmp_path):
    repo, root, _ = ensemble
    np.savez(tmp_path / "nolabels.npz", input=seed_data.x_test)
    code = main(["--repo", str(repo.root), "pipeline", "create", str(root / "vote.toml"),
                 "--name", "nolabels", "--eval", str(tmp_path / "nolabels.npz")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines()[0] == ("error: eval set nolabels.npz: no array 'y' (the true "
                                   "class ids)")
    assert repo.versions("nolabels") == []
