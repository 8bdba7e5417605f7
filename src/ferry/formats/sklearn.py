"""scikit-learn estimators from skops files (or trusted pickles), converted with skl2onnx.

Safety: a pickle (``pickle.dump``, ``joblib.dump``) is a program: unpickling it can run any
code its author chose. ferry therefore reads scikit-learn models from **skops** files, whose
loader rebuilds only the types it is told to trust. ferry trusts the types skops itself
trusts plus those under a small allow-list of prefixes (:data:`TRUSTED_PREFIXES`: the
scikit-learn, numpy and scipy.sparse types a fitted estimator is made of), minus modules that
reach outside the process (:data:`DENIED_PARTS`: file and compiler helpers). Any other type
(a class from the user's own module, say) is refused by name. A pickle or joblib file is
loaded only when the operator passes its sha256 (``--trust-sha256``): trusting a file is a
decision about that exact file, so a changed file is refused with both hashes.

Signature: an estimator fitted on a numpy array (``n_features_in_`` set) gets one FP32
input ``input`` of shape ``[-1, n]``. One fitted on a pandas DataFrame whose columns go
through a ``ColumnTransformer`` or an encoder (``feature_names_in_`` set, mixed numeric and
categorical columns) gets one ``[-1, 1]`` input per column: FP32 for numeric columns, BYTES
(ONNX ``string``) for categorical ones. That is the layout skl2onnx converts best: its
ColumnTransformer converter selects columns by input name, and one ONNX tensor cannot mix
floats and strings. skl2onnx turns column names into identifiers (``sepal length (cm)``
becomes ``sepal_length__cm_``); the signature uses its names.

Outputs: classifiers expose ``probabilities`` (``[-1, classes]``, first, so ``/predict``
adds class labels) and ``label``; regressors ``predictions``. The class labels
(``classes_`` as strings) go into the manifest.

Parity: the estimator's own ``predict``/``predict_proba`` on the samples. Labels must be
identical. skl2onnx computes in float32 where scikit-learn uses float64, so probabilities
must agree within 1e-4 absolute, and regression values within 1e-4 + 1e-4·|y|: regression
targets are not bounded like probabilities, and a float32 sum of a few hundred terms of
size |y| carries a relative error of about 1e-6..1e-5, well inside 1e-4.
"""

from __future__ import annotations

import hmac
import pickletools
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import (
    ArtifactError,
    ConversionError,
    InputError,
    UntrustedArtifactError,
)
from ferry.formats._trees import snap_thresholds, snapped_note
from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.conversion import ARTIFACT, Fallback, convert_or_fall_back
from ferry.formats.detect import read_head, zip_names
from ferry.formats.parity import Split, make_samples, split_samples
from ferry.repository.hashing import hash_file
from ferry.runtimes import Arrays
from ferry.runtimes.sklearn import (
    DENIED_PARTS,
    TRUSTED_PREFIXES,
    is_allowed,
    load_pickle,
    load_skops,
)
from ferry.signature import Signature, TensorSpec

__all__ = ["DENIED_PARTS", "TRUSTED_PREFIXES", "SklearnImporter", "is_allowed"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_RESAVE = ('re-save it with skops: skops.io.dump(model, "model.skops"), then import '
           "model.skops")


@dataclass(frozen=True)
class _Column:
    """One DataFrame column the estimator was fitted on."""

    name: str
    datatype: str  # FP32, INT64 or BYTES
    categories: list[Any] | None = None


class SklearnImporter(Importer):
    """scikit-learn classifiers and regressors saved with skops (or a trusted pickle)."""

    format: ClassVar[str] = "sklearn"
    description: ClassVar[str] = (
        "scikit-learn estimator (.skops; pickle/joblib only with --trust-sha256)"
    )
    converter: ClassVar[str] = "skl2onnx"
    extra: ClassVar[str | None] = "sklearn"
    requires: ClassVar[tuple[str, ...]] = ("sklearn", "skl2onnx", "skops", "joblib")
    native_runtime: ClassVar[str | None] = "sklearn"

    def sniff(self, path: Path) -> bool:
        """A zip holding skops' ``schema.json``, or a pickle (opcode PROTO 0x80, protocol 2..5).

        joblib's uncompressed files are pickles too; compressed joblib files are not
        recognised (re-save them with skops).
        """
        head = read_head(path, 2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return True
        return "schema.json" in zip_names(path)

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Load safely, infer the inputs, convert with skl2onnx and name the outputs."""
        model = _load(source, options.trust_sha256)
        kind = _kind(model, source.name)
        columns = _columns(model)
        has_proba = kind == "classifier" and hasattr(model, "predict_proba")
        notes = []
        if kind == "classifier" and not has_proba:
            notes.append("the classifier has no predict_proba: only 'label' is exposed")
        if options.native:
            _check_matrix(columns)
        splits = _splits(model) if columns is None else None
        at_splits = None
        if splits is not None:
            at_splits = {"input": split_samples(splits, int(model.n_features_in_),
                                                options.seed)}

        def export(path: Path) -> Converted:
            onnx_model = _to_onnx(model, columns, has_proba, options.opset)
            snapped = snap_thresholds(onnx_model, splits)[0] if splits is not None else 0
            signature = _finish(onnx_model, kind, has_proba, path)
            return _converted(model, kind, has_proba, signature, columns, options,
                              [*notes, *snapped_note(snapped)], at_splits)

        native = _Native(source, model, kind, has_proba, notes, at_splits)
        fallback = None
        if columns is None:  # the native runtime serves one feature matrix
            fallback = Fallback(native.label, native.store, asked_runtime="sklearn")
        return convert_or_fall_back(workdir, options, export, fallback)


def _converted(model: Any, kind: str, has_proba: bool, signature: Signature,
               columns: list[_Column] | None, options: ImportOptions, notes: list[str],
               at_splits: Arrays | None) -> Converted:
    """What skl2onnx wrote (its signature given), with the estimator's own predict."""
    input_names = signature.input_names
    if columns is not None and len(columns) != len(input_names):
        raise ConversionError(
            f"skl2onnx made {len(input_names)} inputs for the {len(columns)} columns the "
            "model was fitted on; ferry cannot tell which column each input is"
        )
    # skl2onnx keeps the initial_types order and only makes the names identifiers.
    column_inputs = (
        dict(zip(input_names, columns, strict=True)) if columns is not None else None
    )
    reference = _reference(model, kind, has_proba, signature, column_inputs)
    samples = None
    origin = None
    categorical = columns is not None and any(c.datatype != "FP32" for c in columns)
    if categorical and options.samples is None:
        samples = _column_samples(signature, column_inputs or {}, options)
        origin = (f"{options.sample_count} generated (seed {options.seed}); categorical "
                  "columns drawn from the fitted encoder's categories")
    import skl2onnx
    import sklearn

    labels = [str(c) for c in model.classes_] if kind == "classifier" else None
    regressor = kind == "regressor"
    return Converted(
        artifact=ARTIFACT,
        signature=signature,
        converter=f"skl2onnx {skl2onnx.__version__}",
        framework=f"scikit-learn {sklearn.__version__} ({type(model).__name__})",
        reference=reference,
        reference_name=f"scikit-learn {sklearn.__version__} "
        + ("predict" if not has_proba else "predict/predict_proba"),
        labels=labels,
        tolerance=1e-4,
        rtol=1e-4 if regressor else 0.0,
        notes=notes,
        samples=samples,
        samples_origin=origin,
        threshold_rows=at_splits,
    )


# -- the native runtime ------------------------------------------------------------------


class _Native:
    """The source file kept as it is, served by the ``sklearn`` runtime (a feature matrix)."""

    def __init__(self, source: Path, model: Any, kind: str, has_proba: bool,
                 notes: list[str], threshold_rows: Arrays | None) -> None:
        import sklearn

        self.source, self.model = source, model
        self.kind, self.has_proba, self.notes = kind, has_proba, notes
        self.threshold_rows = threshold_rows
        self.framework = f"scikit-learn {sklearn.__version__} ({type(model).__name__})"
        self.label = f"sklearn ({self.framework})"

    def store(self, workdir: Path, note: str) -> Converted:
        """Copy the source file into ``workdir``; the Converted that serves it natively."""
        pickled = read_head(self.source, 1) == b"\x80"
        artifact = "model.pkl" if pickled else "model.skops"
        shutil.copyfile(self.source, workdir / artifact)
        signature = _matrix_signature(self.model, self.kind, self.has_proba)
        regressor = self.kind == "regressor"
        return Converted(
            artifact=artifact, signature=signature, runtime="sklearn", platform="sklearn",
            converter=None, framework=self.framework,
            reference=_as_float32(
                _reference(self.model, self.kind, self.has_proba, signature, None)),
            reference_name="scikit-learn predict"
            + ("/predict_proba" if self.has_proba else "") + " (in memory, from the source)",
            labels=[str(c) for c in self.model.classes_] if not regressor else None,
            tolerance=1e-6, rtol=1e-6 if regressor else 0.0, notes=[*self.notes, note],
            threshold_rows=self.threshold_rows,
        )


def _as_float32(reference: Any) -> Any:
    """The estimator's float64 answers rounded to FP32, as the native runtime returns them."""

    def run(samples: Arrays) -> Arrays:
        return {name: value.astype(np.float32) if value.dtype == np.float64 else value
                for name, value in reference(samples).items()}

    return run


def _check_matrix(columns: list[_Column] | None) -> None:
    """``--native`` is refused for a model that takes per-column inputs."""
    if columns is not None:
        raise InputError(
            "--native: the native scikit-learn runtime serves models fitted on one feature "
            "matrix; this one takes per-column inputs (a ColumnTransformer or string columns)",
            hint="import it without --native (skl2onnx converts column models)",
        )


def _matrix_signature(model: Any, kind: str, has_proba: bool) -> Signature:
    """What skl2onnx would make of an estimator fitted on an ``[n, features]`` matrix."""
    inputs = (TensorSpec(name="input", datatype="FP32",
                         shape=(-1, int(model.n_features_in_))),)
    if kind == "regressor":
        return Signature(inputs=inputs, outputs=(
            TensorSpec(name="predictions", datatype="FP32", shape=(-1, 1)),))
    classes = np.asarray(model.classes_)
    label = "INT64" if classes.dtype.kind in "iub" else "BYTES"
    outputs = [TensorSpec(name="label", datatype=label, shape=(-1,))]
    if has_proba:
        outputs.insert(0, TensorSpec(name="probabilities", datatype="FP32",
                                     shape=(-1, len(classes))))
    return Signature(inputs=inputs, outputs=tuple(outputs))


# -- loading -----------------------------------------------------------------------------


def _load(source: Path, trust_sha256: str | None) -> Any:
    head = read_head(source, 2)
    if len(head) == 2 and head[0] == 0x80:
        return _load_pickle(source, trust_sha256)
    return load_skops(source)


def _load_pickle(source: Path, trust_sha256: str | None) -> Any:
    digest, _ = hash_file(source)
    booster = _pickled_booster(source)
    if booster is not None:
        raise UntrustedArtifactError(
            f"{source.name} is a pickle of {_BOOSTER_NAME[booster]} model; ferry never unpickles "
            "XGBoost or LightGBM models "
            "(unpickling runs any code the file's author put in it)",
            hint=_BOOSTER_RESAVE[booster],
        )
    if trust_sha256 is None:
        raise UntrustedArtifactError(
            f"{source.name} is a pickle: unpickling runs any code the file's author put in "
            f"it, so ferry loads it only with --trust-sha256 {digest} (if you trust who made "
            f"it); better, {_RESAVE}"
        )
    wanted = trust_sha256.strip().lower()
    if not _HEX64.fullmatch(wanted):
        raise InputError(
            f"--trust-sha256 must be 64 hexadecimal digits, got {trust_sha256!r}"
        )
    if not hmac.compare_digest(wanted, digest):
        raise UntrustedArtifactError(
            f"{source.name} has sha256 {digest}, not the trusted {wanted}: the file is not "
            "the one you trusted, so ferry will not unpickle it"
        )
    return load_pickle(source)


_BOOSTER_NAME = {"xgboost": "an XGBoost", "lightgbm": "a LightGBM"}
_BOOSTER_RESAVE = {
    "xgboost": 're-save it in XGBoost\'s own format: model.save_model("model.json") '
               "(or .ubj), then import model.json",
    "lightgbm": 're-save it in LightGBM\'s own format: model.booster_.save_model("model.txt") '
                '(a Booster: model.save_model("model.txt")), then import model.txt',
}


def _pickled_booster(source: Path, max_ops: int = 200_000) -> str | None:
    """``xgboost`` or ``lightgbm`` if the pickle names one of their classes, else None.

    Reads the opcodes with :mod:`pickletools` (which executes nothing), so the refusal can
    point to the booster's own file format, which XGBoost and LightGBM models must use.
    """
    strings: list[str] = []
    try:
        with source.open("rb") as handle:
            for count, (op, arg, _) in enumerate(pickletools.genops(handle)):
                if count > max_ops:
                    break
                if op.name == "GLOBAL" and isinstance(arg, str):
                    module = arg.split(" ", 1)[0]
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    module = strings[-2]
                else:
                    if isinstance(arg, str):
                        strings.append(arg)
                        del strings[:-2]
                    continue
                root = module.split(".", 1)[0]
                if root in _BOOSTER_RESAVE:
                    return root
    except Exception:  # a damaged pickle: the caller's own checks report it
        return None
    return None


def _kind(model: Any, filename: str) -> str:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(model, "get_params"):
        raise ConversionError(
            f"{filename} holds a {type(model).__name__}, not a scikit-learn estimator"
        )
    if is_classifier(model) and hasattr(model, "predict"):
        kind = "classifier"
    elif is_regressor(model) and hasattr(model, "predict"):
        kind = "regressor"
    else:
        raise ConversionError(
            f"{filename} holds a {type(model).__name__}; ferry imports scikit-learn "
            "classifiers and regressors (or Pipelines ending in one)"
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ArtifactError(
            f"{filename} holds an unfitted {type(model).__name__}",
            hint="call fit() before saving",
        ) from None
    return kind


# -- signature ---------------------------------------------------------------------------


def _columns(model: Any) -> list[_Column] | None:
    """One entry per DataFrame column when per-column inputs are needed, else None."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    categories = _encoder_categories(model)
    columns = []
    for name in (str(n) for n in names):
        cats = categories.get(name)
        datatype = "FP32"
        if cats is not None and cats.dtype.kind in "OUS":
            datatype = "BYTES"
        elif cats is not None and cats.dtype.kind in "iu":
            datatype = "INT64"
        columns.append(_Column(name, datatype, None if cats is None else list(cats)))
    mixed = any(c.datatype != "FP32" for c in columns)
    if not mixed and not _has_column_transformer(model):
        return None  # all numeric, no selection by name: one [-1, n] tensor is simpler
    return columns


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    return [step for _, step in steps] if steps is not None else [model]


def _has_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    return any(isinstance(step, ColumnTransformer) for step in _steps(model))


def _encoder_categories(model: Any) -> dict[str, Any]:
    """Column name -> fitted categories, from encoders that see DataFrame columns."""
    from sklearn.compose import ColumnTransformer

    found: dict[str, Any] = {}
    first = _steps(model)[0]
    if isinstance(first, ColumnTransformer):
        all_names = [str(n) for n in getattr(first, "feature_names_in_", [])]
        for _, transformer, cols in first.transformers_:
            encoder = _last_encoder(transformer)
            names = _column_names(cols, all_names)
            if encoder is not None and names and len(names) == len(encoder.categories_):
                found.update(zip(names, encoder.categories_, strict=True))
    else:
        encoder = _last_encoder(first)
        seen = getattr(encoder, "feature_names_in_", None)
        if encoder is not None and seen is not None:
            found.update(zip((str(n) for n in seen), encoder.categories_, strict=True))
    return found


def _last_encoder(transformer: Any) -> Any:
    if isinstance(transformer, str):  # "drop", "passthrough"
        return None
    for step in reversed(_steps(transformer)):
        if hasattr(step, "categories_"):
            return step
    return None


def _column_names(cols: Any, all_names: list[str]) -> list[str]:
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, int):
        return [all_names[cols]] if cols < len(all_names) else []
    if isinstance(cols, slice):  # positions, or labels (inclusive, as pandas .loc)
        if all(isinstance(b, int | None) for b in (cols.start, cols.stop)):
            return all_names[cols]
        start = all_names.index(cols.start) if cols.start in all_names else 0
        stop = all_names.index(cols.stop) + 1 if cols.stop in all_names else len(all_names)
        return all_names[start:stop]
    try:
        items = list(cols)
    except TypeError:
        return []
    if items and all(isinstance(c, bool | np.bool_) for c in items):
        return [n for n, keep in zip(all_names, items, strict=False) if keep]
    if all(isinstance(c, int | np.integer) for c in items):
        return [all_names[int(c)] for c in items if int(c) < len(all_names)]
    return [str(c) for c in items]


# -- conversion --------------------------------------------------------------------------


def _to_onnx(model: Any, columns: list[_Column] | None, has_proba: bool,
             opset: int | None) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    if columns is None:
        width = int(model.n_features_in_)
        initial_types: list[Any] = [("input", FloatTensorType([None, width]))]
    else:
        types = {"FP32": FloatTensorType, "INT64": Int64TensorType, "BYTES": StringTensorType}
        initial_types = [(c.name, types[c.datatype]([None, 1])) for c in columns]
    # Probabilities as one [-1, classes] tensor, not skl2onnx's default list of dicts (which
    # the Open Inference Protocol cannot carry). Only probabilistic classifiers know zipmap.
    options = {id(model): {"zipmap": False}} if has_proba else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx warns about opsets and its own internals
            return convert_sklearn(model, initial_types=initial_types, options=options,
                                   target_opset=opset)
    except Exception as exc:  # skl2onnx raises RuntimeError, MissingShapeCalculator, ...
        raise ConversionError(
            f"skl2onnx cannot convert this {type(model).__name__}: {_first_line(exc)}",
            hint="skl2onnx lists the estimators it supports in its documentation",
        ) from None


def _finish(onnx_model: Any, kind: str, has_proba: bool, path: Path) -> Signature:
    """Name the outputs, put probabilities first, save, check, and read the signature."""
    import onnx

    from ferry.formats.onnx import onnx_signature, write_checked_onnx

    graph = onnx_model.graph
    outputs = list(graph.output)
    wanted = ["label", "probabilities"] if kind == "classifier" else ["predictions"]
    renames = {out.name: new for out, new in zip(outputs, wanted, strict=False)}
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
    for out in outputs:
        out.name = renames.get(out.name, out.name)
    keep = {"label", "probabilities"} if has_proba else {"label"}
    if kind == "regressor":
        keep = {"predictions"}
    ordered = sorted((o for o in outputs if o.name in keep),
                     key=lambda o: ["probabilities", "label", "predictions"].index(o.name))
    ordered = [onnx.ValueInfoProto.FromString(o.SerializeToString()) for o in ordered]
    del graph.output[:]
    graph.output.extend(ordered)
    onnx.save(onnx_model, str(path))
    write_checked_onnx(path)
    return onnx_signature(onnx_model)


# -- tree thresholds ---------------------------------------------------------------------

#: Estimators whose trees see the input columns themselves (no feature subsets, no
#: preprocessing): their thresholds are the ones the ONNX trees compare the input with.
_TREE_ESTIMATORS = frozenset({
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
    "ExtraTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
    "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
    "GradientBoostingRegressor",
})


def _splits(model: Any) -> list[Split] | None:
    """Every split of a tree estimator: ``x <= threshold`` (a double) goes left; else None.

    scikit-learn casts inputs to float32 and compares them with double thresholds.
    """
    if type(model).__module__.split(".")[0] != "sklearn" or \
            type(model).__name__ not in _TREE_ESTIMATORS:
        return None
    trees = [model] if hasattr(model, "tree_") else list(np.ravel(model.estimators_))
    splits: list[Split] = []
    for estimator in trees:
        tree = estimator.tree_
        stack: list[tuple[int, tuple[tuple[int, float, bool], ...]]] = [(0, ())]
        while stack:
            node, path = stack.pop()
            left, right = int(tree.children_left[node]), int(tree.children_right[node])
            if left == -1:
                continue
            feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
            splits.append(Split(feature, threshold, path))
            stack += [(left, (*path, (feature, threshold, True))),
                      (right, (*path, (feature, threshold, False)))]
    return splits


# -- parity ------------------------------------------------------------------------------


def _reference(model: Any, kind: str, has_proba: bool, signature: Signature,
               columns: dict[str, _Column] | None) -> Any:
    """The estimator's own predict (and predict_proba) on the samples, named as the ONNX."""
    specs = {spec.name: spec for spec in signature.outputs}
    feature_names = getattr(model, "feature_names_in_", None)

    def run(samples: Arrays) -> Arrays:
        try:
            x = _features(samples, columns, feature_names)
            predicted = np.asarray(model.predict(x))
            proba = np.asarray(model.predict_proba(x)) if has_proba else None
        except Exception as exc:  # the estimator raises ValueError, TypeError, ... on bad rows
            raise ArtifactError(
                f"scikit-learn's own predict fails on the parity samples: {_first_line(exc)}",
                hint="pass real rows with --samples FILE.json (one [[value], ...] list per "
                "input), so that every column gets values its encoder knows",
            ) from None
        if kind == "regressor":
            rank = len(specs["predictions"].shape)
            shaped = predicted.reshape(len(predicted), -1) if rank == 2 else predicted.ravel()
            return {"predictions": shaped}
        if specs["label"].datatype == "BYTES":  # ONNX Runtime's strings come back as bytes
            encoded = np.empty(predicted.shape, dtype=object)
            encoded[:] = [str(v).encode("utf-8") for v in predicted.reshape(-1)]
            predicted = encoded
        result: Arrays = {"label": predicted}
        if proba is not None:
            result["probabilities"] = proba
        return result

    return run


def _features(samples: Arrays, columns: dict[str, _Column] | None, feature_names: Any) -> Any:
    """The samples as the estimator was fitted: an array, or a DataFrame with its columns.

    Numbers are widened to float64 (exactly) so the reference is the float64 model itself.
    """
    import pandas as pd

    if columns is None:
        data = np.asarray(samples["input"], dtype=np.float64)
        if feature_names is None:
            return data
        return pd.DataFrame(data, columns=list(feature_names))
    frame: dict[str, Any] = {}
    for input_name, column in columns.items():
        values = np.asarray(samples[input_name]).reshape(-1)
        if column.datatype == "BYTES":
            frame[column.name] = np.array(
                [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values],
                dtype=object,
            )
        elif column.datatype == "INT64":
            frame[column.name] = values.astype(np.int64)
        else:
            frame[column.name] = values.astype(np.float64)
    return pd.DataFrame(frame)


def _column_samples(signature: Signature, columns: dict[str, _Column],
                    options: ImportOptions) -> Arrays:
    """Numeric columns as the signature's generated samples; strings from the categories."""
    samples = make_samples(signature, options.sample_count, options.seed)
    rng = np.random.default_rng(options.seed)
    for spec in signature.inputs:
        column = columns.get(spec.name)
        if column is None or column.datatype == "FP32":
            continue
        if not column.categories:
            raise InputError(
                f"input {spec.name!r} (column {column.name!r}) takes categories ferry cannot "
                "read from the model, so it cannot make parity samples",
                hint="pass real rows with --samples FILE.json, e.g. "
                f'{{"{spec.name}": [["a value"], ...], ...}}',
            )
        picked = rng.choice(len(column.categories), size=(options.sample_count, 1))
        values = [column.categories[int(i)] for i in picked.reshape(-1)]
        if column.datatype == "BYTES":
            array = np.empty(len(values), dtype=object)
            array[:] = [str(v).encode("utf-8") for v in values]
        else:
            array = np.asarray(values, dtype=np.int64)
        samples[spec.name] = array.reshape(options.sample_count, 1)
    return samples


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."

