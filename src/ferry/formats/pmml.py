"""PMML documents: checked with a DTD-refusing parser, served natively by pypmml.

PMML is the Data Mining Group's XML format for trained models (regression, trees and tree
ensembles, neural networks, ...), written by exporters such as sklearn2pmml, R's pmml, KNIME
or SAS. No maintained converter turns PMML into ONNX, so the document itself is stored and
served by :class:`ferry.runtimes.pmml.PmmlRuntime` (pypmml, i.e. PMML4S on the JVM); the
manifest and ``ferry show`` say so.

Detection reads the first kilobyte: an XML document whose first element is ``<PMML``.
Safety and the supported model types are in :mod:`ferry.runtimes.pmml`: no DOCTYPE or
entities, a classification or regression model of a type pypmml evaluates, numeric inputs.

Signature: one ``input`` tensor (FP64, ``[-1, fields]``, the MiningSchema's active fields
in document order, listed in the manifest's notes); outputs ``predictions`` (FP64) for
regression, ``probabilities`` (FP64, ``[-1, classes]``) and ``label`` (BYTES: PMML's own
class values) for classification. The class values become the manifest's labels.

Then one output per ``OutputField`` the document declares for its result (``[-1]``, FP64
for continuous numbers, BYTES otherwise), named by
:func:`ferry.runtimes.pmml.tensor_names`, the one mapping the runtime uses too:
sklearn2pmml's ``probability(0)`` is served as ``probability_0``. The manifest's
``source_names`` keeps each such tensor's original field name, and ``ferry show`` prints it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import ClassVar

from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.detect import read_head
from ferry.runtimes.pmml import load_pmml, model_outputs, read_document
from ferry.signature import Signature, TensorSpec

__all__ = ["PmmlImporter"]

ARTIFACT = "model.pmml"
# Optional BOM, XML declaration, comments and processing instructions, then <PMML or <x:PMML.
_FIRST_ELEMENT = re.compile(rb"<(?![?!])([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


class PmmlImporter(Importer):
    """PMML 4.x documents (``.pmml``, ``.xml``), evaluated by pypmml."""

    format: ClassVar[str] = "pmml"
    description: ClassVar[str] = (
        "PMML document (.pmml): regression, trees and ensembles, neural networks, ..."
    )
    converter: ClassVar[str] = "none: no maintained PMML->ONNX converter; served by pypmml"
    extra: ClassVar[str | None] = "pmml"
    requires: ClassVar[tuple[str, ...]] = ("pypmml",)
    native_runtime: ClassVar[str | None] = "pmml"

    def sniff(self, path: Path) -> bool:
        """The first element of the document (in its first KiB) is ``<PMML``."""
        head = read_head(path, 1024).removeprefix(b"\xef\xbb\xbf").lstrip()
        if not head.startswith(b"<"):
            return False
        match = _FIRST_ELEMENT.search(head)
        return match is not None and match.group(2) == b"PMML"

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Check the document, load it with pypmml, and store it as it is."""
        doc = read_document(source)
        model = load_pmml(source)
        described = model_outputs(model, doc)
        classes = described.classes
        columns = len(doc.inputs)
        inputs = (TensorSpec(name="input", datatype="FP64", shape=(-1, columns)),)
        if doc.function == "classification":
            outputs: tuple[TensorSpec, ...] = (
                TensorSpec(name="probabilities", datatype="FP64", shape=(-1, len(classes))),
                TensorSpec(name="label", datatype="BYTES", shape=(-1,)),
            )
        else:
            outputs = (TensorSpec(name="predictions", datatype="FP64", shape=(-1,)),)
        outputs += tuple(TensorSpec(name=f.tensor, datatype=f.datatype, shape=(-1,))
                         for f in described.fields)
        shutil.copyfile(source, workdir / ARTIFACT)
        import pypmml

        return Converted(
            artifact=ARTIFACT,
            signature=Signature(inputs=inputs, outputs=outputs),
            runtime="pmml",
            platform="pmml",
            converter=None,
            framework=f"pypmml {pypmml.__version__} (PMML4S), PMML {model.version}",
            reference=None,
            labels=classes or None,
            source_names={f.tensor: f.field for f in described.fields},
            tolerance=0.0,
            notes=[
                f"served natively by pypmml: no maintained converter turns PMML into ONNX "
                f"({doc.model_type}, {doc.function})",
                f"input columns, in order: {', '.join(doc.inputs)}",
            ],
        )
