"""The README's "Formats" examples, run as a reader would: every block, in order.

Each ``python`` block is a complete script (one per format); the ``bash`` blocks then write
the PMML document and import everything, in a fresh directory with the virtualenv's
``python`` and ``ferry`` first on the PATH, so the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _formats_section() -> str:
    text = README.read_text()
    start = text.index("\n## Formats\n")
    return text[start:text.index("\n## ", start + 1)]


# Long by nature: every framework's example trains, exports and imports in a subprocess of its
# own (~40 s on two cores, more when they are busy): twice the suite's default.
@pytest.mark.timeout(600)
def test_every_format_example_in_the_readme_runs_and_imports(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FERRY_REPOSITORY", None)
    blocks = BLOCK.findall(_formats_section())
    assert [lang for lang, _ in blocks].count("python") >= 4
    out = []
    for lang, code in blocks:
        if lang == "python":
            script = tmp_path / "example.py"
            script.write_text(code)
            command = [sys.executable, str(script)]
        elif lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            continue
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        out.append(result.stdout)
    text = "\n".join(out)
    for line in ("imported digits:1 (keras -> onnxruntime)",
                 "imported digits-tf:1 (savedmodel -> onnxruntime)",
                 "imported iris:1 (torch -> onnxruntime)",
                 "imported iris:2 (torch -> torch)",
                 "imported iris-sk:1 (sklearn -> onnxruntime)",
                 "imported iris-sk:2 (sklearn -> onnxruntime)",
                 "imported diabetes:1 (xgboost -> onnxruntime)",
                 "imported cancer:1 (lightgbm -> onnxruntime)",
                 "imported linear:1 (pmml -> pmml)"):
        assert line in text, f"{line!r} not in the output:\n{text}"
    for fmt in ("keras", "onnx", "savedmodel", "torch", "sklearn", "xgboost", "lightgbm", "pmml"):
        assert re.search(rf"\W{fmt}\s", out[-1]), f"ferry formats lacks {fmt}:\n{out[-1]}"
