"""docs/formats-torch-savedmodel.md, run as a reader would: its code blocks, in order.

Within each section the ``python`` blocks are run first, as one script (later blocks use
the ``model`` and ``x`` of earlier ones), then the ``bash`` blocks, in a fresh directory
with the virtualenv's ``python`` and ``ferry`` first on the PATH. ``pip install`` lines are
skipped (the test environment has every extra); ``text`` blocks are output, not commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats-torch-savedmodel.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _sections(text: str) -> list[tuple[str, list[str], list[str]]]:
    sections = []
    for part in re.split(r"^## ", text, flags=re.MULTILINE):
        title = part.splitlines()[0] if part else ""
        blocks = BLOCK.findall(part)
        python = [code for lang, code in blocks if lang == "python"]
        bash = ["\n".join(line for line in code.splitlines() if not line.startswith("pip "))
                for lang, code in blocks if lang == "bash"]
        sections.append((title, python, bash))
    return sections


# Long by nature: each example of the doc trains and exports a torch or TensorFlow model in a
# subprocess of its own (~35 s on two cores, more when they are busy): twice the
# suite's default.
@pytest.mark.timeout(600)
def test_every_example_of_the_doc_runs(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for title, python, bash in _sections(DOC.read_text()):
        if python:
            script = tmp_path / "example.py"
            script.write_text("\n".join(python))
            result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{title}: {result.stderr[-2000:]}"
        for code in bash:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{title}: {code}\n{result.stderr[-2000:]}"
            ran.append(result.stdout)
    out = "\n".join(ran)
    assert "imported iris:1 (torch -> onnxruntime)" in out
    assert "imported iris:3 (torch -> onnxruntime)" in out  # the scripted module, with samples
    assert "imported digits:1 (savedmodel -> onnxruntime)" in out
    assert "imported doubler:1 (savedmodel -> onnxruntime)" in out
    assert "imported iris:4 (torch -> torch)" in out
    assert "imported digits:2 (savedmodel -> tensorflow)" in out
    assert '"model_name": "iris"' in out  # ferry predict answered
