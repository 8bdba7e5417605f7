"""PMML documents, evaluated by pypmml (PMML4S on the JVM): ferry's native PMML runtime.

No maintained converter turns PMML into ONNX, so a PMML model is served as the document
itself, behind the same :class:`~ferry.runtimes.Runtime` interface as ONNX Runtime.

The JVM: pypmml talks over py4j to a Java gateway that runs in a child process. It is not
started when this module is imported, only by the first :func:`start_jvm` (the first PMML
model loaded), and then once per process: later models reuse it. The cost is paid once:
on the 2-core test machine the gateway started in 0.35 s (the first PMML import took about
0.5 s end to end) and the Java process held about 120 MB resident; py4j kills it when this
process exits. Each ``predict`` is one py4j round trip carrying the whole batch as JSON:
about 0.6 ms for one row of a small neural network, 56 ms for 150 rows (measured while
other tests ran; PMML4S scores row by row).

Safety: the document is read with :func:`read_document` before any Java parser sees it.
PMML has no use for a DTD, so a ``<!DOCTYPE`` (and any entity declaration) is refused
outright: this is defusedxml's ``forbid_dtd`` policy, done with the standard library's expat
because defusedxml is not a dependency. With no DTD there can be no entity expansion
("billion laughs", quadratic blow-up) and no external entity (XXE: reading local files or
URLs), neither in expat nor later in the JVM's parser.

Output names: besides ferry's own outputs (``probabilities`` and ``label``, or
``predictions``), each ``OutputField`` the document declares for its final result is served
as a tensor of its own. PMML field names are free text (sklearn2pmml writes
``probability(0)``, ``decisionFunction(setosa)``), so :func:`tensor_names` maps them to
tensor names, and the importer and :class:`PmmlRuntime` both call it on the same document:
the manifest's ``source_names`` keeps the original field names.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from xml.parsers import expat

import numpy as np

from ferry.errors import (
    ArtifactError,
    InputError,
    MissingDependencyError,
    UnsupportedFormatError,
    UntrustedArtifactError,
)
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = [
    "MODEL_TYPES",
    "OWN_OUTPUTS",
    "FieldOutput",
    "PmmlDocument",
    "PmmlOutputs",
    "PmmlRuntime",
    "import_pypmml",
    "load_pmml",
    "model_outputs",
    "read_document",
    "start_jvm",
    "tensor_names",
]

#: PMML model elements that pypmml evaluates and ferry serves (classification or regression).
MODEL_TYPES = (
    "GeneralRegressionModel", "MiningModel", "NaiveBayesModel", "NearestNeighborModel",
    "NeuralNetwork", "RegressionModel", "RuleSetModel", "Scorecard",
    "SupportVectorMachineModel", "TreeModel",
)
_FUNCTIONS = ("classification", "regression")
_NUMERIC = ("double", "float", "integer")
_NOT_MODELS = {"Header", "MiningBuildTask", "DataDictionary", "TransformationDictionary",
               "Extension"}
_TARGET_USAGE = {"target", "predicted"}
#: ferry's own output tensors; a document's field never takes one of these names.
OWN_OUTPUTS = ("probabilities", "label", "predictions")
_IGNORED_USAGE = {"supplementary", "group", "order", "frequencyWeight", "analysisWeight"}


@dataclass
class PmmlDocument:
    """What ferry reads from a PMML document without evaluating it.

    Attributes:
        model_type: the first model element (``RegressionModel``, ``MiningModel``, ...).
        function: its ``functionName`` (``classification`` or ``regression``).
        inputs: the active fields of its MiningSchema, in document order.
        target: the target field, if the MiningSchema names one.
        data_types: each DataDictionary field's ``dataType``.
        outputs: the names of every ``OutputField`` in the model, at any depth (a model
            chain's final segment declares the chain's result), in document order.
    """

    model_type: str = ""
    function: str = ""
    inputs: list[str] = field(default_factory=list)
    target: str | None = None
    data_types: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


class _Refused(Exception):
    """Raised inside expat's callbacks to stop at a DOCTYPE or entity declaration."""


class _Reader:
    """Expat callbacks that fill a :class:`PmmlDocument` (one pass, constant memory)."""

    def __init__(self) -> None:
        self.doc = PmmlDocument()
        self.path: list[str] = []
        self.root: str | None = None

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        name = tag.rsplit(":", 1)[-1]  # "pmml:PMML" -> "PMML"
        self.path.append(name)
        if self.root is None:
            self.root = name
        depth = len(self.path)
        if depth == 3 and self.path[1] == "DataDictionary" and name == "DataField":
            self.doc.data_types[attrs.get("name", "")] = attrs.get("dataType", "")
        elif depth == 2 and name not in _NOT_MODELS and not self.doc.model_type:
            self.doc.model_type = name
            self.doc.function = attrs.get("functionName", "")
        elif (depth == 4 and name == "MiningField" and self.path[1] == self.doc.model_type
              and self.path[2] == "MiningSchema"):
            self._mining_field(attrs)
        elif (name == "OutputField" and depth >= 4 and self.path[1] == self.doc.model_type
              and self.path[-2] == "Output"):
            self.doc.outputs.append(attrs.get("name", ""))

    def _mining_field(self, attrs: dict[str, str]) -> None:
        usage = attrs.get("usageType", "active")
        if usage in _TARGET_USAGE:
            self.doc.target = self.doc.target or attrs.get("name")
        elif usage not in _IGNORED_USAGE:
            self.doc.inputs.append(attrs.get("name", ""))

    def end(self, tag: str) -> None:
        self.path.pop()


def _refuse_dtd(*_: Any) -> int:
    raise _Refused


def read_document(path: Path) -> PmmlDocument:
    """Read a PMML document's model type, function and fields with a DTD-refusing parser.

    Raises:
        UntrustedArtifactError: the document has a DOCTYPE or declares entities.
        ArtifactError: it is not well-formed XML, or not PMML.
        UnsupportedFormatError: its model type or function is one ferry does not serve, or
            an input field is not numeric.
    """
    reader = _Reader()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    try:
        with path.open("rb") as handle:
            parser.ParseFile(handle)
    except _Refused:
        raise UntrustedArtifactError(
            f"{path.name} declares a DOCTYPE or entities; PMML needs neither, and ferry "
            "refuses them (entity expansion and external entities are XML attacks)",
            hint="remove the <!DOCTYPE ...> declaration",
        ) from None
    except expat.ExpatError as exc:
        raise ArtifactError(
            f"{path.name} is not well-formed XML: {exc}",
            hint="the file may be truncated or hand-edited; export it again",
        ) from None
    if reader.root != "PMML":
        raise ArtifactError(f"{path.name} is XML but not PMML (its root element is "
                            f"<{reader.root}>, expected <PMML>)")
    _check_supported(reader.doc, path.name)
    return reader.doc


def _check_supported(doc: PmmlDocument, filename: str) -> None:
    if not doc.model_type:
        raise ArtifactError(f"{filename} is a PMML document without a model element")
    if doc.model_type not in MODEL_TYPES:
        raise UnsupportedFormatError(
            f"{filename}: PMML model type {doc.model_type} is not supported; ferry serves "
            f"{', '.join(MODEL_TYPES)}",
        )
    if doc.function not in _FUNCTIONS:
        raise UnsupportedFormatError(
            f"{filename}: {doc.model_type} with functionName={doc.function!r} is not "
            "supported; ferry serves classification and regression models",
        )
    for name in doc.inputs:
        kind = doc.data_types.get(name, "?")
        if kind not in _NUMERIC:
            raise UnsupportedFormatError(
                f"{filename}: input field {name!r} has dataType {kind!r}; ferry serves PMML "
                "models whose input fields are numeric (double, float, integer)",
            )
    if not doc.inputs:
        raise UnsupportedFormatError(f"{filename}: the model's MiningSchema has no input field")


_JVM_LOCK = threading.Lock()
_JVM: list[Any] = []  # the PMMLContext, once started


def start_jvm() -> Any:
    """Start pypmml's Java gateway on first use; later calls return the same one.

    Raises:
        MissingDependencyError: pypmml is not installed.
        ArtifactError: Java could not be started (not installed, not on PATH).
    """
    with _JVM_LOCK:
        if not _JVM:
            pypmml = import_pypmml()
            try:
                _JVM.append(pypmml.PMMLContext.getOrCreate())
            except Exception as exc:  # py4j raises plain Exception when java is missing
                raise ArtifactError(
                    f"pypmml could not start Java: {_first_line(exc)}",
                    hint="PMML models need a Java runtime (11 or newer) on PATH or in JAVA_HOME",
                ) from None
        return _JVM[0]


def import_pypmml() -> Any:
    """Import pypmml, or say which extra installs it."""
    try:
        import pypmml
    except ImportError:
        raise MissingDependencyError("serving PMML models", "pmml") from None
    return pypmml


def load_pmml(path: Path) -> Any:
    """Check the document (:func:`read_document`) and load it with pypmml.

    Raises:
        ArtifactError: the document is unsafe, unsupported or PMML4S refuses it.
    """
    read_document(path)
    start_jvm()
    pypmml = import_pypmml()
    try:
        model = pypmml.Model.fromFile(str(path.resolve()))
        model.setSupplementOutput(True)
    except Exception as exc:  # PMMLError, Py4JJavaError
        raise ArtifactError(f"pypmml cannot load {path.name}: {_first_line(exc)}") from None
    return model


_TENSOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OTHER_CHARACTERS = re.compile(r"[^A-Za-z0-9_]+")


def tensor_names(fields: Iterable[str], reserved: Iterable[str] = OWN_OUTPUTS) -> dict[str, str]:
    """Map PMML output field names to the tensor names ferry serves them under.

    The importer and :class:`PmmlRuntime` both call this on the same document, so a stored
    version's signature and its runtime always agree. A tensor name is ASCII letters,
    digits and ``_``, not starting with a digit.

    1. A field whose name is already a tensor name, and not ``reserved``, keeps it.
    2. Any other name has each run of other characters replaced by one ``_``, and ``_`` at
       either end dropped: ``probability(0)`` -> ``probability_0``, ``probability(Iris
       setosa)`` -> ``probability_Iris_setosa``, ``p.1`` -> ``p_1``. A result that is empty
       or starts with a digit gets ``field_`` in front (``(1)`` -> ``field_1``; ``()`` ->
       ``field``).
    3. Collisions: the names of step 1 are claimed first, then those of step 2 in the
       order given (document order); a name already claimed or reserved gets the smallest
       free suffix ``_2``, ``_3``, ...: ``p(1)`` and ``p[1]`` -> ``p_1`` and ``p_1_2``;
       ``label`` -> ``label_2``.

    Args:
        fields: the output field names, in document order (duplicates are mapped once).
        reserved: names no field may take (ferry's own outputs).

    Returns:
        field name -> tensor name, in the order of ``fields``.
    """
    names = list(dict.fromkeys(fields))
    taken = set(reserved)
    chosen: dict[str, str] = {}
    for name in names:
        if _TENSOR_NAME.fullmatch(name) and name not in taken:
            chosen[name] = name
            taken.add(name)
    for name in names:
        if name in chosen:
            continue
        base = _OTHER_CHARACTERS.sub("_", name).strip("_")
        if not base or base[0].isdigit():
            base = f"field_{base}".rstrip("_")
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        chosen[name] = candidate
        taken.add(candidate)
    return {name: chosen[name] for name in names}


@dataclass(frozen=True)
class FieldOutput:
    """One output field the document declares, served as a tensor of its own.

    Attributes:
        field: the ``OutputField`` name, as the document writes it.
        tensor: the tensor name it is served under (:func:`tensor_names`).
        datatype: ``FP64`` for a continuous number, ``BYTES`` for anything else.
    """

    field: str
    tensor: str
    datatype: str


@dataclass(frozen=True)
class PmmlOutputs:
    """Which of PMML4S's result columns make up each output tensor.

    Attributes:
        predicted: the column of the predicted value (class or number).
        probability: the columns of the class probabilities, in class order
            (empty for regression).
        classes: the class values, as strings (empty for regression).
        fields: the document's own output fields, each its own tensor.
    """

    predicted: str
    probability: list[str]
    classes: list[str]
    fields: list[FieldOutput]


_NUMBERS = {"double", "float", "integer", "real"}


def model_outputs(model: Any, doc: PmmlDocument) -> PmmlOutputs:
    """The result columns behind each output tensor of a loaded model.

    The document's own output fields are those PMML4S returns for the final result, without
    its supplementary columns, that the document declares (PMML4S makes up
    ``predicted_<target>`` and ``probability_<class>`` when it declares none). The
    prediction and the probabilities come from the document's own fields where it has them
    (sklearn2pmml writes ``probability(<class>)``), else from PMML4S's defaults.
    """
    declared = set(doc.outputs)
    model.setSupplementOutput(False)
    try:
        own = [f for f in model.outputFields if f.name in declared]
    finally:
        model.setSupplementOutput(True)
    by_feature = {(str(f.feature), None if f.value is None else str(f.value)): f.name
                  for f in reversed(own)}  # the first field of a kind wins
    target = model.targetName or doc.target or "target"
    predicted = by_feature.get(("predictedValue", None), f"predicted_{target}")
    classes = ([str(c) for c in (model.classes or [])]
               if doc.function == "classification" else [])
    probability = [by_feature.get(("probability", c), f"probability_{c}") for c in classes]
    names = tensor_names(f.name for f in own)
    fields = [FieldOutput(f.name, names[f.name],
                          "FP64" if str(f.dataType) in _NUMBERS
                          and str(f.opType) == "continuous" else "BYTES")
              for f in own]
    return PmmlOutputs(predicted, probability, classes, fields)


class PmmlRuntime(Runtime):
    """Evaluates a PMML document with pypmml: one JSON round trip per batch.

    Inputs: one ``input`` tensor, ``[batch, fields]``, columns in MiningSchema order.
    Outputs: ``predictions`` (regression), or ``probabilities`` and ``label`` (class
    labels as BYTES, as PMML writes them); then one tensor per output field the document
    declares, named by :func:`tensor_names` (``probability(0)`` -> ``probability_0``).
    """

    name: ClassVar[str] = "pmml"

    def __init__(self, model: Any, signature: Signature, doc: PmmlDocument) -> None:
        super().__init__(signature)
        self._model = model
        self._columns = doc.inputs
        self._outputs = model_outputs(model, doc)
        self._fields = {f.tensor: f for f in self._outputs.fields}

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> PmmlRuntime:
        """Check and load the document; the JVM starts here if it is the first model.

        Raises:
            ArtifactError: PMML4S does not give a column the outputs need, or the signature
                names an output the document's fields do not map to.
        """
        doc = read_document(artifact)
        model = load_pmml(artifact)
        runtime = cls(model, signature, doc)
        outputs = runtime._outputs
        missing = [n for n in [outputs.predicted, *outputs.probability]
                   if n not in model.outputNames]
        if missing:
            raise ArtifactError(f"pypmml gives no output {missing[0]!r} for {artifact.name}; "
                                f"it gives {', '.join(model.outputNames)}")
        unknown = [n for n in signature.output_names
                   if n not in OWN_OUTPUTS and n not in runtime._fields]
        if unknown:
            have = ", ".join(f"{f.tensor} ({f.field})" for f in outputs.fields) or "none"
            raise ArtifactError(
                f"{artifact.name}: the signature's output {unknown[0]!r} is none of the "
                f"document's output fields; they map to: {have}",
                hint="import the document again",
            )
        return runtime

    @property
    def supports_batching(self) -> bool:
        """Rows are scored independently: batches may be concatenated."""
        return True

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Score every row in one call; a row PMML cannot score is an InputError."""
        rows = np.asarray(inputs[self.signature.inputs[0].name], dtype=np.float64)
        data = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
        request = json.dumps({"columns": self._columns, "data": data})
        try:
            answer = json.loads(self._model.predict(request))
        except Exception as exc:  # PMMLError / Py4JJavaError from PMML4S
            raise InputError(f"the PMML model rejected these inputs: {_first_line(exc)}") from None
        names = outputs or self.signature.output_names
        return self._unpack(answer, len(data), names)

    def _unpack(self, answer: dict[str, Any], count: int, names: Sequence[str]) -> Arrays:
        index = {name: i for i, name in enumerate(answer.get("columns", []))}
        table = answer.get("data", [])
        if len(table) != count:
            raise ArtifactError(f"pypmml returned {len(table)} rows for {count}")
        predicted = [row[index[self._outputs.predicted]] for row in table]
        if any(value is None for value in predicted):
            row = predicted.index(None)
            raise InputError(f"the PMML model gives no prediction for row {row} (a missing "
                             "value, or one outside a field's valid range?)")
        result: Arrays = {}
        for name in names:
            if name == "predictions":
                result[name] = np.asarray(predicted, dtype=np.float64)
            elif name == "label":
                result[name] = _bytes(predicted)
            elif name == "probabilities":
                columns = self._outputs.probability
                result[name] = np.asarray(
                    [[row[index[c]] or 0.0 for c in columns] for row in table],
                    dtype=np.float64).reshape(count, len(columns))
            else:
                field = self._fields[name]
                column = [row[index[field.field]] for row in table]
                result[name] = (_bytes(column) if field.datatype == "BYTES" else np.asarray(
                    [np.nan if v is None else v for v in column], dtype=np.float64))
        return result

    def close(self) -> None:
        """Drop the model; the JVM stays up for the next model (one per process)."""
        self._model = None


def _bytes(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """PMML values as a BYTES tensor: UTF-8 text, a missing value as b""."""
    array = np.empty(len(values), dtype=object)
    array[:] = [b"" if v is None else str(v).encode("utf-8") for v in values]
    return array


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) < 300 else line[:297] + "..."
