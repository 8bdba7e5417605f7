"""The README's "Pipelines and ensembles" examples, run as a reader would: every block, in
order, in a fresh directory with the virtualenv's ``python`` and ``ferry`` first on the PATH.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from extras import require

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _section() -> str:
    text = README.read_text()
    start = text.index("\n## Pipelines and ensembles\n")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.timeout(600)
def test_every_pipeline_example_in_the_readme_runs(tmp_path):
    require("skops")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FERRY_REPOSITORY", None)
    blocks = [(lang, code) for lang, code in BLOCK.findall(_section())
              if lang in ("python", "bash")]
    assert [lang for lang, _ in blocks] == ["python", "bash", "bash", "python"]
    out = []
    for lang, code in blocks:
        if lang == "python":
            script = tmp_path / "example.py"
            script.write_text(code)
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        out.append(result.stdout)

    created, top3, loaded = out[1], out[2], out[3]
    assert "stored pipeline digits-vote:1 (4 steps)" in created
    figures = re.findall(r"^  accuracy (\d\.\d{4}) on 360 rows \((.+)\)$", created, re.MULTILINE)
    assert [who for _, who in figures] == [
        "the pipeline", "step logreg: logreg:1", "step tree: tree:1", "step bayes: bayes:1"]
    assert all(float(value) > 0.7 for value, _ in figures), figures
    lines = created.splitlines()
    assert "digits-vote:1  pipeline -> pipeline (ferry_pipeline)" in lines  # ferry show
    notes = [line.removeprefix("  note      ") for line in lines if line.startswith("  note ")]
    assert "step logreg: model logreg, follows the latest version (1 at import)" in notes
    reported = [f"accuracy {value} on 360 rows ({who})" for value, who in figures]
    assert notes[-4:] == reported  # kept in the manifest
    assert lines[-4:] == reported  # and ferry pipeline eval says the same

    assert "stored pipeline digits-top3:1 (2 steps)" in top3
    rows = ast.literal_eval(loaded.splitlines()[0])
    assert len(rows) == 2 and all(len(row) == 3 for row in rows)
    assert rows[0][0] == "0" and rows[1][0] == "1"  # the first two digits are a 0 and a 1
