"""The limit: raw in-process ONNX Runtime on one core, no server, batch 1/8/32/64/128.

Run as its own process pinned to the server core (``taskset -c 0``) so that it measures what
that core can compute, with one intra-op thread as a server on that core would use:

    taskset -c 0 python -m benchmarks.raw_ort model.onnx --batches 1,8,32,64,128 --seconds 2

It prints one JSON object: for each batch size, samples/s and the mean time of one ``run``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCHES: tuple[int, ...] = (1, 8, 32, 64, 128)


def measure(artifact: Path, batches: Sequence[int] = BATCHES, *, seconds: float = 2.0,
            warmup: float = 0.3) -> dict[str, dict[str, float]]:
    """Samples/s of ``session.run`` on random inputs for each batch size.

    Returns:
        ``{"<batch>": {"samples_per_s": ..., "ms_per_run": ..., "runs": ...}}``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    features = int(meta.shape[1])
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    for batch in batches:
        feed = {meta.name: rng.random((batch, features), dtype=np.float32)}
        _loop(session, feed, warmup)
        runs, elapsed = _loop(session, feed, seconds)
        results[str(batch)] = {"samples_per_s": runs * batch / elapsed,
                               "ms_per_run": elapsed / runs * 1000, "runs": runs}
    return results


def _loop(session: Any, feed: dict[str, Any], seconds: float) -> tuple[int, float]:
    runs = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        session.run(None, feed)
        runs += 1
        now = time.perf_counter()
        if now >= deadline:
            return runs, now - start


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: measure one artifact and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    print(json.dumps(measure(args.artifact, batches, seconds=args.seconds)))


if __name__ == "__main__":
    main()
