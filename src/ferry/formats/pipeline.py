"""``import_model``: from a user's file to a committed, parity-checked repository version."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ferry.arrays import read_arrays
from ferry.errors import ArtifactError, FerryError, InputError
from ferry.formats.base import (
    Converted,
    ImportOptions,
    NullProgress,
    Progress,
    ReferenceUnavailableError,
)
from ferry.formats.detect import detect_format
from ferry.formats.parity import compare, make_samples
from ferry.repository import (
    Manifest,
    ParityReport,
    Repository,
    SourceInfo,
    check_model_name,
    now_utc,
)
from ferry.repository.hashing import hash_file, hash_tree
from ferry.runtimes import Arrays, Runtime, load_runtime
from ferry.signature import Signature, as_array

__all__ = ["import_model", "parity_samples"]

_AT_SPLITS = "rows at the trees' split thresholds and their float32 neighbours"


def import_model(
    repo: Repository,
    source: Path,
    name: str,
    *,
    format: str | None = None,
    options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Import ``source`` as the next version of model ``name`` in ``repo``.

    Detects (or checks) the format, converts in a private staging directory, loads the
    artifact with its runtime, proves parity on sample inputs, and only then commits the
    version. If anything fails nothing is written.

    Returns:
        The committed manifest.

    Raises:
        FerryError: any user-facing failure: unknown format, unsafe file, parity...
    """
    check_model_name(name)
    options = options or ImportOptions()
    progress = progress or NullProgress()
    source = Path(source)
    importer = detect_format(source, format)
    importer.ensure_available()
    if options.native and importer.native_runtime is None:
        raise InputError(
            f"--native: ferry has no native runtime for {importer.format} models; "
            "they are always converted to ONNX",
            hint="drop --native",
        )
    with progress.step(f"hashing {source.name}"):
        source_info = _source_info(source, importer.format)
    with repo.stage() as workdir:
        with progress.step(f"loading {source.name} as {importer.format} and converting"):
            converted = importer.convert(source, workdir, options)
        with progress.step(f"loading the artifact with {converted.runtime}"):
            runtime = load_runtime(
                converted.runtime, workdir / converted.artifact, converted.signature
            )
        with runtime, progress.step("checking parity with the source model"):
            parity = _parity(converted, runtime, options)
        draft = Manifest(
            name=name,
            version=0,
            format=importer.format,
            runtime=converted.runtime,
            platform=converted.platform,
            artifact=converted.artifact,
            signature=converted.signature,
            files={},
            source=source_info.model_copy(update={"framework": converted.framework}),
            converter=converted.converter,
            parity=parity,
            created=now_utc(),
            labels=options.labels if options.labels is not None else converted.labels,
            source_names=converted.source_names,
            notes=converted.notes,
        )
        _check_labels(draft)
        with progress.step("writing the new version"):
            return repo.commit(workdir, draft)


def _source_info(source: Path, fmt: str) -> SourceInfo:
    if source.is_dir():
        # A directory's digest covers its file names and their contents.
        tree = hash_tree(source)
        digest = hashlib.sha256(
            "".join(f"{rel}\0{h}\n" for rel, (h, _) in sorted(tree.items())).encode()
        ).hexdigest()
        size = sum(n for _, n in tree.values())
    else:
        digest, size = hash_file(source)
    return SourceInfo(filename=source.name, sha256=digest, size=size, format=fmt)


def _parity(converted: Converted, runtime: Runtime, options: ImportOptions) -> ParityReport:
    signature = converted.signature
    if options.samples is None and converted.samples is not None:
        samples = converted.samples
        origin = converted.samples_origin or "drawn from the source model"
    else:
        samples, origin = parity_samples(options, signature)
    tolerance = options.tolerance if options.tolerance is not None else converted.tolerance
    expected: Arrays | None = None
    method = f"{converted.runtime} run (the artifact is the source file)"
    if converted.reference is not None:
        try:
            expected = converted.reference(samples)
            method = f"{converted.runtime} vs {converted.reference_name or 'source framework'}"
        except ReferenceUnavailableError as exc:
            method = f"{converted.runtime} run only ({exc})"
    if expected is None:
        # No independent reference: prove the runtime runs the artifact on the samples.
        expected = runtime.predict(samples)
    for spec in signature.outputs:
        if spec.name not in expected:
            raise ArtifactError(f"the source model produced no output {spec.name!r}")
    report = compare(
        signature, expected, runtime, samples, method=method, origin=origin,
        tolerance=tolerance, rtol=converted.rtol,
    )
    return _check_threshold_rows(converted, runtime, report)


def _check_threshold_rows(converted: Converted, runtime: Runtime,
                          report: ParityReport) -> ParityReport:
    """A tree model's rows at its split thresholds must agree too; the report counts them."""
    rows = converted.threshold_rows
    if rows is None:
        return report
    count = int(next(iter(rows.values())).shape[0]) if rows else 0
    if converted.reference is None:
        count = 0  # nothing to compare them with
    if count and converted.reference is not None:
        at_splits = compare(
            converted.signature, converted.reference(rows), runtime, rows,
            method=report.method, origin=_AT_SPLITS, tolerance=report.tolerance,
            rtol=report.rtol,
        )
        diffs = {name: max(value, at_splits.max_abs_diff.get(name, 0.0))
                 for name, value in report.max_abs_diff.items()}
        mismatches = {name: value + at_splits.mismatches.get(name, 0)
                      for name, value in report.mismatches.items()}
        report = report.model_copy(update={"max_abs_diff": diffs, "mismatches": mismatches})
    return report.model_copy(update={"threshold_rows": count})


def parity_samples(options: ImportOptions, signature: Signature) -> tuple[Arrays, str]:
    """The parity inputs for ``signature``: the user's (checked), or generated; and their origin.

    Importers that try a conversion before committing to it (and fall back to a native
    runtime when it misses parity) check it on these same inputs.

    Raises:
        InputError: the given samples do not fit the signature.
    """
    given = options.samples
    if given is None:
        samples = make_samples(signature, options.sample_count, options.seed)
        return samples, f"{options.sample_count} generated from the signature (seed {options.seed})"
    try:
        if isinstance(given, Path):
            samples, origin = read_arrays(given, signature), f"given in {given.name}"
        elif isinstance(given, np.ndarray):
            samples = {signature.inputs[0].name: as_array(signature.inputs[0], given)}
            origin = "given"
        else:
            samples, origin = dict(given), "given"
        signature.check_inputs(samples)
    except FerryError as exc:
        raise InputError(f"the parity samples do not fit the model: {exc.message}") from None
    return samples, options.samples_origin or origin


def _check_labels(manifest: Manifest) -> None:
    labels = manifest.labels
    if labels is None:
        return
    out = manifest.signature.outputs[0]
    classes = out.shape[-1] if out.shape else -1
    if classes not in (-1, len(labels)):
        raise InputError(
            f"{len(labels)} labels given, but output {out.name!r} has {classes} classes"
        )
