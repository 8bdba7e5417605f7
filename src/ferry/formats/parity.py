"""Parity: prove that the stored artifact answers like the model the user gave us.

Both are run on the same sample inputs (the user's, or generated from the signature with a
fixed seed). Floating outputs must agree within ``|source - artifact| <= tol + rtol*|source|``
everywhere; every other output (labels, integers, strings) must be identical. The figures go
into the manifest; a failure is refused with the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.errors import ParityError
from ferry.repository import ParityReport
from ferry.runtimes import Arrays, Runtime
from ferry.signature import Signature, TensorSpec

__all__ = ["compare", "make_samples"]

_VARIABLE_DIM = 4  # size chosen for a variable non-batch dimension (sequence length, ...)


def make_samples(signature: Signature, count: int, seed: int) -> Arrays:
    """Generate ``count`` sample rows per input from the signature, reproducibly.

    Floats are standard normal, integers are drawn from [0, 10) (small enough to be valid
    indices for most embeddings), booleans are fair coins, strings are short words.
    """
    rng = np.random.default_rng(seed)
    samples: Arrays = {}
    for spec in signature.inputs:
        shape = _concrete_shape(spec, count)
        samples[spec.name] = _random(spec, shape, rng)
    return samples


def _concrete_shape(spec: TensorSpec, count: int) -> tuple[int, ...]:
    dims = list(spec.shape)
    if dims and dims[0] == -1:
        dims[0] = count
    return tuple(_VARIABLE_DIM if d == -1 else d for d in dims)


def _random(spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator
            ) -> np.ndarray[Any, Any]:
    kind = spec.dtype.kind
    if kind == "f":
        return rng.standard_normal(shape).astype(spec.dtype)
    if kind in "iu":
        return rng.integers(0, 10, size=shape).astype(spec.dtype)
    if kind == "b":
        return rng.random(shape) < 0.5
    words = np.array([b"alpha", b"beta", b"gamma", b"delta"], dtype=object)
    return rng.choice(words, size=shape)


def compare(
    signature: Signature,
    expected: Arrays,
    artifact: Runtime,
    samples: Arrays,
    *,
    method: str,
    origin: str,
    tolerance: float,
    rtol: float = 0.0,
) -> ParityReport:
    """Run the artifact on ``samples`` and compare with the source's ``expected`` outputs.

    Returns:
        The report to record in the manifest (``passed`` is always True).

    Raises:
        ParityError: an output differs beyond the tolerance; the message gives max |Δ|, the
            tolerance, the sample count and the output's name.
    """
    got = artifact.predict(samples)
    count = _sample_count(samples)
    diffs: dict[str, float] = {}
    mismatches: dict[str, int] = {}
    failures: list[str] = []
    for spec in signature.outputs:
        want, have = np.asarray(expected[spec.name]), np.asarray(got[spec.name])
        if want.shape != have.shape:
            failures.append(
                f"output {spec.name!r}: source gave shape {list(want.shape)}, "
                f"artifact {list(have.shape)}"
            )
            continue
        if spec.dtype.kind == "f":
            delta = np.abs(want.astype(np.float64) - have.astype(np.float64))
            diffs[spec.name] = float(np.nanmax(delta)) if delta.size else 0.0
            limit = tolerance + rtol * np.abs(want.astype(np.float64))
            if np.isnan(delta).any() or (delta > limit).any():
                failures.append(
                    f"output {spec.name!r}: max |Δ| = {diffs[spec.name]:.3g} exceeds "
                    f"tolerance {tolerance:g}" + (f" + {rtol:g}·|x|" if rtol else "")
                )
        else:
            mismatches[spec.name] = int(np.count_nonzero(want != have))
            if mismatches[spec.name]:
                failures.append(
                    f"output {spec.name!r}: {mismatches[spec.name]} of {want.size} values differ"
                )
    if failures:
        raise ParityError(
            f"parity check failed on {count} samples ({origin}): " + "; ".join(failures),
            hint="pass real inputs with --samples, or accept a looser --tolerance if the "
            "difference is expected (e.g. a lower-precision artifact)",
        )
    return ParityReport(
        method=method, samples=count, inputs=origin, tolerance=tolerance, rtol=rtol,
        max_abs_diff=diffs, mismatches=mismatches, passed=True,
    )


def _sample_count(samples: Arrays) -> int:
    first = next(iter(samples.values()))
    return int(first.shape[0]) if first.ndim else 1
