"""The benchmark harness lives in benchmarks/ at the repository root, outside the package."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # `python -m pytest` has it already; plain `pytest` does not
    sys.path.insert(0, str(_ROOT))
