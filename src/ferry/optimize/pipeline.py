"""``optimize_version`` and ``compare_versions``: the command-level orchestration.

The steps run in one fixed order, whatever order the flags were given in:

1. **prune** (magnitude, or ``structured``) on the float32 weights, where they are plain
   initializers;
2. **quantize** (dynamic, static or fp16), on the pruned float32 graph with its standard
   operators (ONNX Runtime's quantizers do not take its own fused operators);
3. **fuse**: ONNX Runtime's offline optimizer, so it also fuses the quantized patterns;
4. **compact**, always: short internal names, no stored intermediate shapes
   (:mod:`ferry.optimize.compact`).

The result is staged, measured beside its parent, checked against the quality guard, and
only then committed (the importer's ``Repository.stage``/``commit`` path): a refused or
failed optimization writes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ferry.errors import InputError, ParityError
from ferry.formats.base import NullProgress, Progress
from ferry.formats.parity import make_samples
from ferry.optimize.compact import compact
from ferry.optimize.evaluation import EvalData, read_eval, read_samples
from ferry.optimize.fuse import fuse
from ferry.optimize.prune import prune_magnitude, prune_structured
from ferry.optimize.quantize import MODES, quantize
from ferry.optimize.report import Report, measure, predict_all, quality
from ferry.repository import (
    Manifest,
    ModelRef,
    Optimization,
    OptimizationStep,
    Repository,
    StoredModel,
    now_utc,
)
from ferry.runtimes import Arrays, RuntimeOptions, load_runtime

__all__ = ["ORDER", "OptimizeOptions", "OptimizeResult", "compare_versions", "optimize_version"]

#: The order the steps run in (see the module docstring); compact always runs.
ORDER = ("prune", "quantize", "fuse", "compact")
_ARTIFACT = "model.onnx"
_GENERATED_ROWS = 64


@dataclass(frozen=True)
class OptimizeOptions:
    """What ``ferry optimize`` does; each field is one of its flags."""

    fuse: bool = False
    quantize: str | None = None
    prune: float | None = None
    structured: bool = False
    calibration: Path | Arrays | None = None
    eval: Path | EvalData | None = None
    max_drop: float = 1.0
    force: bool = False
    threads: int = 0
    #: Timing budget per version and batch size, in seconds (200 runs at most).
    timing_seconds: float = 1.0

    def check(self) -> None:
        """Refuse contradictory or empty options before anything is read.

        Raises:
            InputError: no step, an unknown mode, a fraction outside (0, 1), ...
        """
        if not (self.fuse or self.quantize or self.prune is not None):
            raise InputError("nothing to do: give --fuse, --quantize MODE or --prune FRACTION")
        if self.quantize is not None and self.quantize not in MODES:
            raise InputError(f"--quantize {self.quantize!r}: choose one of {', '.join(MODES)}")
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise InputError(f"--prune {self.prune:g}: the fraction must be between 0 and 1 "
                             "(exclusive), e.g. --prune 0.5")
        if self.structured and self.prune is None:
            raise InputError("--structured needs --prune FRACTION (the share of hidden units "
                             "to drop)")
        if self.calibration is not None and self.quantize != "static":
            raise InputError("--calibration is used only by --quantize static")
        if self.quantize == "static" and self.calibration is None:
            raise InputError("--quantize static needs calibration data: --calibration FILE "
                             "(sample inputs, .npz/.npy/.json as --samples reads them)")
        if self.max_drop < 0:
            raise InputError(f"--max-drop {self.max_drop:g}: must be 0 or more (points)")


@dataclass(frozen=True)
class OptimizeResult:
    """The committed manifest and its report."""

    manifest: Manifest
    report: Report
    forced: bool


def _tools() -> dict[str, str]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__}


def _onnx_version(repo: Repository, ref: ModelRef | str, what: str) -> StoredModel:
    stored = repo.open(ref)
    m = stored.manifest
    if m.runtime != "onnxruntime":
        raise InputError(
            f"{m.name}:{m.version} is served by the {m.runtime} runtime ({m.format}); "
            f"{what} works on versions ONNX Runtime serves (import without --native)"
        )
    return stored


def _eval_data(given: Path | EvalData | None, stored: StoredModel) -> EvalData:
    signature = stored.manifest.signature
    if isinstance(given, EvalData):
        signature.check_inputs(given.inputs)
        return given
    if given is not None:
        return read_eval(Path(given), signature)
    samples = make_samples(signature, _GENERATED_ROWS, 0)
    return EvalData(samples, None, f"{_GENERATED_ROWS} rows generated from the signature "
                    "(seed 0; give --eval FILE for real data)")


def _compare(before: StoredModel, before_path: Path, after_path: Path, data: EvalData,
             threads: int, seconds: float, progress: Progress) -> Report:
    signature = before.manifest.signature
    with progress.step("measuring both versions (size, FLOPs, latency, quality)"):
        figures_before, figures_after = (
            measure(path, "onnxruntime", signature, data, threads=threads, seconds=seconds)
            for path in (before_path, after_path))
        outputs = []
        for path in (before_path, after_path):
            with load_runtime("onnxruntime", path, signature,
                              RuntimeOptions(intra_op_threads=threads)) as runtime:
                outputs.append(predict_all(runtime, data.inputs))
    return Report(before=figures_before, after=figures_after, threads=threads,
                  quality=quality(outputs[0], outputs[1], signature, data.labels, data.origin))


def compare_versions(repo: Repository, first: ModelRef | str, second: ModelRef | str, *,
                     eval: Path | EvalData | None = None, threads: int = 0,
                     timing_seconds: float = 1.0, progress: Progress | None = None) -> Report:
    """Measure two ONNX Runtime versions side by side (the second judged against the first).

    Raises:
        NotFoundError: a version does not exist.
        InputError: a version is not served by ONNX Runtime, the signatures differ, or the
            eval data do not fit.
    """
    a = _onnx_version(repo, first, "ferry compare")
    b = _onnx_version(repo, second, "ferry compare")
    if a.manifest.signature != b.manifest.signature:
        raise InputError(f"{a.manifest.name}:{a.manifest.version} and "
                         f"{b.manifest.name}:{b.manifest.version} have different signatures; "
                         "compare versions that take the same inputs")
    data = _eval_data(eval, a)
    return _compare(a, a.artifact_path, b.artifact_path, data, threads, timing_seconds,
                    progress or NullProgress())


def optimize_version(repo: Repository, ref: ModelRef | str, options: OptimizeOptions, *,
                     progress: Progress | None = None,
                     on_report: Callable[[Report], None] | None = None) -> OptimizeResult:
    """Optimize a version into the next version of the same model (see the module docstring).

    ``on_report`` is called with the measured report before the quality guard decides, so
    a caller can show the figures of a version that is then refused.

    Raises:
        NotFoundError: the version does not exist.
        InputError: bad options or data, a native-runtime version, a model the steps
            cannot take; nothing is written.
        ParityError: the quality dropped more than ``max_drop`` points and ``force`` is
            off; the message gives the figures; nothing is written.
    """
    options.check()
    progress = progress or NullProgress()
    parent = _onnx_version(repo, ref, "ferry optimize")
    m = parent.manifest
    signature = m.signature
    data = _eval_data(options.eval, parent)
    calibration: Arrays | None = None
    if isinstance(options.calibration, Path):
        calibration = read_samples(options.calibration, signature, flag="--calibration")
    elif options.calibration is not None:
        signature.check_inputs(options.calibration)
        calibration = dict(options.calibration)
    steps: list[OptimizationStep] = []
    with repo.stage() as work:
        scratch = work / ".steps"
        scratch.mkdir()
        current = scratch / "parent.onnx"
        onnx.save(onnx.load(str(parent.artifact_path)), str(current))
        if options.prune is not None:
            kind = "structured" if options.structured else "magnitude"
            with progress.step(f"pruning {options.prune:.0%} ({kind})"):
                model = onnx.load(str(current))
                pruned = (prune_structured if options.structured else prune_magnitude)(
                    model, options.prune)
                current = scratch / "pruned.onnx"
                onnx.save(model, str(current))
            steps.append(OptimizationStep(name="prune", summary=pruned.summary(), settings={
                "fraction": options.prune, "method": kind,
                "parameters_before": pruned.parameters_before,
                "parameters_after": pruned.parameters_after,
                "sparsity": round(pruned.sparsity, 6),
                **({"units": {k: list(v) for k, v in pruned.units.items()}}
                   if pruned.units else {}),
            }))
        if options.quantize is not None:
            with progress.step(f"quantizing ({options.quantize})"):
                target = scratch / "quantized.onnx"
                quantized = quantize(current, target, options.quantize, calibration=calibration)
                current = target
            steps.append(OptimizationStep(name="quantize", settings=quantized.settings,
                                          summary=quantized.summary()))
        if options.fuse:
            with progress.step("fusing with ONNX Runtime's offline optimizer"):
                target = scratch / "fused.onnx"
                fused = fuse(current, target)
                current = target
            steps.append(OptimizationStep(
                name="fuse", summary=fused.summary(),
                settings={"level": fused.level, "simplifier": None,
                          "nodes_before": fused.before, "nodes_after": fused.after}))
        model = onnx.load(str(current))
        compacted = compact(model)
        onnx.save(model, str(work / _ARTIFACT))
        steps.append(OptimizationStep(name="compact", summary=compacted.summary(), settings={
            "bytes_before": compacted.before, "bytes_after": compacted.after}))
        shutil.rmtree(scratch)
        try:
            load_runtime("onnxruntime", work / _ARTIFACT, signature).close()
        except Exception as exc:  # a signature mismatch or an ORT load error
            raise InputError(f"the optimized model does not load as {m.name}:{m.version}'s "
                             f"signature: {exc}") from None
        report = _compare(parent, parent.artifact_path, work / _ARTIFACT, data,
                          options.threads, options.timing_seconds, progress)
        if on_report is not None:
            on_report(report)
        _guard(report, options, f"{m.name}:{m.version}")
        forced = _over(report, options.max_drop)
        draft = m.model_copy(update={
            "version": 0, "artifact": _ARTIFACT, "files": {}, "created": now_utc(),
            "parity": None, "parent": m.version,
            "notes": [*m.notes, f"optimized from {m.name}:{m.version}: "
                      + ", then ".join(s.name for s in steps if s.name != "compact")],
            "optimization": Optimization(steps=steps, tools=_tools(),
                                         report=report.model_dump(mode="json"),
                                         forced=forced),
        })
        with progress.step("writing the new version"):
            manifest = repo.commit(work, draft)
    return OptimizeResult(manifest, report, forced)


def _over(report: Report, max_drop: float) -> bool:
    drop = report.quality.drop
    return drop is not None and drop > max_drop


def _guard(report: Report, options: OptimizeOptions, where: str) -> None:
    if options.force or not _over(report, options.max_drop):
        return
    q = report.quality
    figures = (f"accuracy {q.accuracy_before:.2%} -> {q.accuracy_after:.2%}"
               if q.accuracy_before is not None and q.accuracy_after is not None
               else f"top-1 agreement {q.top1_agreement:.2%}")
    raise ParityError(
        f"the optimized {where} drops {q.drop:.2f} points of {q.measure} ({figures} on "
        f"{q.origin}), more than --max-drop {options.max_drop:g}; nothing was written",
        hint="--force publishes it anyway; --max-drop X allows more",
    )
