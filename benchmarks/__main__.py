"""``python -m benchmarks``: see benchmarks/run.py (``make bench`` runs this)."""

import sys

from benchmarks.run import main

sys.exit(main())
