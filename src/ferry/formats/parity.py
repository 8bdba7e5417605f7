"""Parity: prove that the stored artifact answers like the model the user gave us.

Both are run on the same sample inputs (the user's, or generated from the signature with a
fixed seed). Floating outputs must agree within ``|source - artifact| <= tol + rtol*|source|``
everywhere; every other output (labels, integers, strings) must be identical. The figures go
into the manifest; a failure is refused with the numbers.

Tree models get two kinds of rows drawn from their own splits (:class:`Split`, supplied by
the tree importers): rows whose values lie *between* the thresholds (:func:`make_samples`
with ``splits``), so that many leaves are reached, and rows placed *at* every threshold and
at its two float32 neighbours (:func:`split_samples`). The latter catch a converted tree
that compares in float32 where its framework compares in float64: a float32 input equal to
the float32 rounding of a double threshold takes the other branch unless the conversion
rounded that threshold the right way (:mod:`ferry.formats._trees`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferry.errors import ParityError
from ferry.repository import ParityReport
from ferry.runtimes import Arrays, Runtime
from ferry.signature import Signature, TensorSpec

__all__ = ["MAX_SPLITS", "Split", "compare", "make_samples", "split_samples"]

_VARIABLE_DIM = 4  # size chosen for a variable non-batch dimension (sequence length, ...)
#: Most distinct (feature, threshold) pairs given rows of their own (three rows each); a
#: larger model gets a seeded choice of this many, and the report counts the rows checked.
MAX_SPLITS = 20_000
_DOWN, _UP = np.float32(-np.inf), np.float32(np.inf)


@dataclass(frozen=True)
class Split:
    """One numeric split of a tree, as its framework holds it.

    Attributes:
        feature: the input column it compares.
        threshold: the threshold exactly as the framework compares it (a double for
            LightGBM and scikit-learn, a float32 value for XGBoost).
        path: the splits above it, ``(feature, threshold, goes_left)`` from the root, so
            that a row can be made to reach this one.
    """

    feature: int
    threshold: float
    path: tuple[tuple[int, float, bool], ...] = ()


def make_samples(signature: Signature, count: int, seed: int, *,
                 splits: Iterable[Split] | None = None) -> Arrays:
    """Generate ``count`` sample rows per input from the signature, reproducibly.

    Floats are standard normal, integers are drawn from [0, 10) (small enough to be valid
    indices for most embeddings), booleans are fair coins, strings are short words.

    With ``splits`` (a tree model: one FP32 ``[-1, features]`` input), each feature takes
    values between the trees' thresholds on it instead, and beyond both ends, so that many
    branches are exercised; a feature no tree splits on is 0.
    """
    if splits is not None:
        spec = signature.inputs[0]
        columns = _between_thresholds(splits, int(spec.shape[-1]), count, seed)
        return {spec.name: columns}
    rng = np.random.default_rng(seed)
    samples: Arrays = {}
    for spec in signature.inputs:
        shape = _concrete_shape(spec, count)
        samples[spec.name] = _random(spec, shape, rng)
    return samples


def split_samples(splits: Sequence[Split], features: int, seed: int) -> np.ndarray[Any, Any]:
    """Rows at every split threshold and at its float32 neighbours, float32 ``[n, features]``.

    For each distinct ``(feature, threshold)`` three rows: the feature set to the float32
    nearest the threshold and to the float32 values just below and above it; the other
    features are drawn between thresholds, then moved so that the row follows the split's
    ``path`` (strictly on the branch's side of each ancestor threshold), so the row reaches
    the split being tested.
    """
    unique: dict[tuple[int, float], Split] = {}
    for split in splits:
        if 0 <= split.feature < features and np.isfinite(split.threshold):
            unique.setdefault((split.feature, split.threshold), split)
    chosen = list(unique.values())
    if len(chosen) > MAX_SPLITS:
        picks = np.random.default_rng(seed).choice(len(chosen), MAX_SPLITS, replace=False)
        chosen = [chosen[i] for i in sorted(picks)]
    base = _between_thresholds(chosen, features, len(chosen), seed)
    rows = np.repeat(base, 3, axis=0)
    for i, split in enumerate(chosen):
        row = rows[3 * i]
        _follow(row, split.path)
        nearest = np.float32(split.threshold)
        rows[3 * i:3 * i + 3] = row
        rows[3 * i:3 * i + 3, split.feature] = (np.nextafter(nearest, _DOWN), nearest,
                                               np.nextafter(nearest, _UP))
    return rows


def _follow(row: np.ndarray[Any, Any], path: tuple[tuple[int, float, bool], ...]) -> None:
    """Move ``row``'s values strictly to the branch side of each threshold on ``path``."""
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    for feature, threshold, left in path:
        if left:
            high[feature] = min(high.get(feature, np.inf), threshold)
        else:
            low[feature] = max(low.get(feature, -np.inf), threshold)
    for feature in set(low) | set(high):
        if feature >= row.size:
            continue
        lo, hi = low.get(feature, -np.inf), high.get(feature, np.inf)
        if lo < float(row[feature]) < hi:
            continue
        if np.isfinite(lo) and np.isfinite(hi):
            value = np.float32((lo + hi) / 2)
        elif np.isfinite(hi):
            value = np.float32(hi - max(1.0, abs(hi) * 0.1))
        else:
            value = np.float32(lo + max(1.0, abs(lo) * 0.1))
        if value >= hi:  # float32 rounding may land on a bound: step inside it
            value = _below(hi)
        if value <= lo:
            value = _above(lo)
        if lo < value < hi:  # else no float32 fits: the split cannot be reached
            row[feature] = value


def _below(bound: float) -> np.float32:
    """The largest float32 strictly below ``bound``."""
    value = np.float32(bound)
    return np.nextafter(value, _DOWN) if value >= bound else value


def _above(bound: float) -> np.float32:
    """The smallest float32 strictly above ``bound``."""
    value = np.float32(bound)
    return np.nextafter(value, _UP) if value <= bound else value


def _between_thresholds(splits: Iterable[Split], features: int, rows: int,
                        seed: int) -> np.ndarray[Any, Any]:
    """Float32 rows whose values lie between the splits' thresholds, feature by feature."""
    per_feature: list[list[float]] = [[] for _ in range(features)]
    for split in splits:
        if 0 <= split.feature < features and np.isfinite(split.threshold):
            per_feature[split.feature].append(float(np.float32(split.threshold)))
    rng = np.random.default_rng(seed)
    columns = [rng.choice(_candidates(values), size=rows) for values in per_feature]
    data = np.stack(columns, axis=1) if columns else np.zeros((rows, 0))
    return data.astype(np.float32)


def _candidates(values: list[float]) -> np.ndarray[Any, Any]:
    """Midpoints between consecutive thresholds, and a value beyond each end."""
    cuts = np.unique(np.asarray(values, dtype=np.float32))
    if cuts.size == 0:
        return np.zeros(1, dtype=np.float32)  # a feature no tree splits on
    margin = max(1.0, float(np.abs(cuts).max()) * 0.1)
    inner = ((cuts[:-1].astype(np.float64) + cuts[1:]) / 2).astype(np.float32)
    inner = inner[~np.isin(inner, cuts)]  # adjacent float32 thresholds have no midpoint
    ends = np.asarray([cuts[0] - margin, cuts[-1] + margin], dtype=np.float32)
    return np.concatenate([inner, ends])


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
