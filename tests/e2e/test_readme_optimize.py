"""The README's "Optimize" examples, run as a reader would: every block, in order, in a
fresh directory with the virtualenv's ``python`` and ``ferry`` first on the PATH."""

from __future__ import annotations

import json
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
    start = text.index("\n## Optimize\n")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.timeout(600)
def test_every_optimize_example_in_the_readme_runs(tmp_path):
    require("sklearn")
    require("tf2onnx")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FERRY_REPOSITORY", None)
    section = _section()
    blocks = [(lang, code) for lang, code in BLOCK.findall(section) if lang in ("python", "bash")]
    assert [lang for lang, _ in blocks] == ["python", "bash"]
    out = []
    for lang, code in blocks:
        if lang == "python":
            (tmp_path / "example.py").write_text(code)
            command = [sys.executable, str(tmp_path / "example.py")]
        else:
            command = ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        out.append(result.stdout + result.stderr)
    text = out[1]
    assert "wrote digits:2 (parent digits:1)" in text and "wrote digits:3 (parent digits:1)" in text
    assert "refused: exit 2" in text and "more than --max-drop 1; nothing was written" in text
    assert "lineage   digits:3 (quantize, fuse) <- digits:1 (imported from keras)" in text
    sizes = re.search(r"^file size \(bytes\)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)x", text, re.M)
    assert sizes is not None and float(sizes.group(3)) <= 0.30  # the table shown in the README
    assert sorted(p.name for p in (tmp_path / "model-repository" / "digits").iterdir()) == [
        "1", "2", "3"]  # the refused one wrote nothing
    report = json.loads((tmp_path / "compare.json").read_text())
    assert report["quality"]["top1_agreement"] >= 0.99
    assert report["quality"]["accuracy_after"] is not None
    # the README's sample table has the rows and figures the command prints
    for row in ("file size (bytes)", "FLOPs per row", "latency p99 batch 32 (ms)",
                "throughput batch 32 (rows/s)", "top-1 agreement", "accuracy"):
        assert row in section and row in text
