"""ferry inside a program: load a stored model version and predict, no server.

    python examples/in_process/predict.py                       # model-repository, digits
    python examples/in_process/predict.py digits-bundle         # a `ferry export` bundle
    python examples/in_process/predict.py model-repository digits:1

Needs only the core install (`pip install ferry`: numpy, onnxruntime, pydantic). The rows are
the seed's sample request (examples/seed/sample.json), read from beside this file.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import ferry
from ferry.errors import FerryError, InputError

SAMPLE = Path(__file__).resolve().parents[1] / "seed" / "sample.json"


def main(repository: str = "model-repository", model: str | None = "digits") -> None:
    rows = np.asarray(json.loads(SAMPLE.read_text())["data"], dtype=np.float32)
    # Every file is checked against the manifest's sha256 before anything runs.
    with ferry.load(repository, model) as digits:
        print(f"loaded {digits.name}:{digits.version} from {digits.path}")
        for spec in digits.signature.inputs:
            print(f"  input  {spec.name}: {spec.describe()}")
        for spec in digits.signature.outputs:
            print(f"  output {spec.name}: {spec.describe()}")

        outputs = digits.predict(rows)  # one array for a single-input model, or a dict
        first = outputs[digits.signature.output_names[-1]]
        classes = first.argmax(axis=1) if first.ndim == 2 else first
        labels = digits.labels or [str(i) for i in range(int(classes.max()) + 1)]
        print("predicted:", [labels[int(c)] for c in classes])

        # The server's checks and messages: a row without its batch axis is refused.
        try:
            digits.predict(rows[0])
        except InputError as exc:
            print("refused:", exc)

        # predict may be called from any number of threads at once.
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda row: digits.predict(row[None]), rows.repeat(8, 0)))
        print(f"{len(answers)} predictions from 4 threads")


if __name__ == "__main__":
    try:
        if len(sys.argv) == 1:
            main()
        else:  # a bundle holds one model: its name may be left out
            main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    except FerryError as exc:
        sys.exit(f"error: {exc}")
