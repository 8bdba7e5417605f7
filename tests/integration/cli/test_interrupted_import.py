"""An import killed midway leaves no partial version, and the next import works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ferry.repository import Repository

FERRY = [sys.executable, "-c", "import sys; from ferry.cli import main; sys.exit(main())"]


def test_kill_during_conversion_leaves_nothing(tmp_path: Path, seed_h5: Path):
    repo = Repository(tmp_path / "repo")
    proc = subprocess.Popen(
        [*FERRY, "--repo", str(repo.root), "import", str(seed_h5), "--name", "digits"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    staging = repo.root / ".staging"
    deadline = time.monotonic() + 60
    try:
        # The staging directory exists from the start of the conversion (TensorFlow's
        # import alone takes seconds), so the kill lands mid-import.
        while not (staging.exists() and any(staging.iterdir())):
            assert proc.poll() is None, "the import finished before it could be interrupted"
            assert time.monotonic() < deadline, "the import never started staging"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(staging.iterdir())
    assert leftovers and all(p.name.startswith(f"{proc.pid}-") for p in leftovers)
    assert repo.models() == [] and repo.versions("digits") == []

    done = subprocess.run(
        [*FERRY, "--repo", str(repo.root), "import", str(seed_h5), "--name", "digits"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert repo.versions("digits") == [1]
    assert list(staging.iterdir()) == [], "the dead import's staging directory was swept"
    repo.open("digits:1")
