"""Small PMML 4.4 documents written from scikit-learn models fitted in the tests.

sklearn2pmml (the well-kept exporter) refuses the installed scikit-learn (1.9.1 is newer than
its converter knows), so the tests write the PMML themselves from the fitted parameters:
three model types, each a few lines of XML that can be checked by eye against the PMML 4.4
specification. The integration tests then compare what pypmml computes from these documents
with scikit-learn's own predictions, which checks the documents and the runtime together.

Inputs must be float32-representable (the tests cast to float32 and back): scikit-learn's
trees compare float32 features, PMML compares doubles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">\n  <Header description="written by ferry\'s tests"/>\n'


def _num(value: float) -> str:
    return repr(float(value))


def data_dictionary(features: Sequence[str], target: str, classes: Sequence[str] | None) -> str:
    """A DataDictionary: continuous double features, and a continuous or categorical target."""
    fields = [f'    <DataField name={quoteattr(f)} optype="continuous" dataType="double"/>'
              for f in features]
    if classes is None:
        fields.append(f'    <DataField name={quoteattr(target)} optype="continuous" dataType="double"/>')
    else:
        values = "".join(f"<Value value={quoteattr(c)}/>" for c in classes)
        fields.append(f'    <DataField name={quoteattr(target)} optype="categorical" '
                      f'dataType="string">{values}</DataField>')
    return (f'  <DataDictionary numberOfFields="{len(fields)}">\n' + "\n".join(fields)
            + "\n  </DataDictionary>\n")


def mining_schema(features: Sequence[str], target: str) -> str:
    """The target and the active fields, in order."""
    rows = [f'<MiningField name={quoteattr(target)} usageType="target"/>']
    rows += [f"<MiningField name={quoteattr(f)}/>" for f in features]
    return "<MiningSchema>" + "".join(rows) + "</MiningSchema>"


def linear_regression(model: Any, features: Sequence[str], target: str = "y") -> str:
    """A fitted ``LinearRegression`` as a PMML RegressionModel (one RegressionTable)."""
    predictors = "".join(
        f'<NumericPredictor name={quoteattr(f)} coefficient="{_num(c)}"/>'
        for f, c in zip(features, model.coef_, strict=True)
    )
    return (_HEAD + data_dictionary(features, target, None)
            + '  <RegressionModel functionName="regression" modelName="linear">'
            + mining_schema(features, target)
            + f'<RegressionTable intercept="{_num(model.intercept_)}">{predictors}'
            + "</RegressionTable></RegressionModel>\n</PMML>\n")


def _tree_nodes(tree: Any, features: Sequence[str], classes: Sequence[str], node: int,
                predicate: str) -> str:
    left, right = tree.children_left[node], tree.children_right[node]
    if left == -1:
        proba = tree.value[node][0] / tree.value[node][0].sum()
        dist = "".join(
            f'<ScoreDistribution value={quoteattr(c)} recordCount="{_num(p)}" '
            f'probability="{_num(p)}"/>'
            for c, p in zip(classes, proba, strict=True)
        )
        score = classes[int(np.argmax(proba))]
        return f"<Node score={quoteattr(score)}>{predicate}{dist}</Node>"
    name, threshold = features[tree.feature[node]], _num(tree.threshold[node])
    go_left = f'<SimplePredicate field={quoteattr(name)} operator="lessOrEqual" value="{threshold}"/>'
    go_right = f'<SimplePredicate field={quoteattr(name)} operator="greaterThan" value="{threshold}"/>'
    return ("<Node>" + predicate
            + _tree_nodes(tree, features, classes, left, go_left)
            + _tree_nodes(tree, features, classes, right, go_right) + "</Node>")


def random_forest(model: Any, features: Sequence[str], classes: Sequence[str],
                  target: str = "y") -> str:
    """A fitted ``RandomForestClassifier`` as a MiningModel averaging its TreeModels.

    scikit-learn averages the trees' class probabilities, which is PMML's ``average``.
    """
    segments = []
    for i, estimator in enumerate(model.estimators_):
        root = _tree_nodes(estimator.tree_, features, classes, 0, "<True/>")
        segments.append(
            f'<Segment id="{i + 1}"><True/><TreeModel functionName="classification" '
            f'splitCharacteristic="binarySplit">{mining_schema(features, target)}{root}'
            "</TreeModel></Segment>"
        )
    return (_HEAD + data_dictionary(features, target, classes)
            + '  <MiningModel functionName="classification" modelName="forest">'
            + mining_schema(features, target)
            + '<Segmentation multipleModelMethod="average">' + "".join(segments)
            + "</Segmentation></MiningModel>\n</PMML>\n")


def neural_network(model: Any, features: Sequence[str], classes: Sequence[str],
                   target: str = "y") -> str:
    """A fitted multiclass ``MLPClassifier`` (ReLU hidden layers, softmax output)."""
    assert model.activation == "relu" and model.out_activation_ == "softmax"
    inputs = "".join(
        f'<NeuralInput id="0,{i}"><DerivedField optype="continuous" dataType="double">'
        f"<FieldRef field={quoteattr(f)}/></DerivedField></NeuralInput>"
        for i, f in enumerate(features)
    )
    layers = []
    for depth, (weights, biases) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        last = depth == len(model.coefs_) - 1
        neurons = []
        for j in range(weights.shape[1]):
            cons = "".join(f'<Con from="{depth},{i}" weight="{_num(weights[i, j])}"/>'
                           for i in range(weights.shape[0]))
            neurons.append(f'<Neuron id="{depth + 1},{j}" bias="{_num(biases[j])}">{cons}</Neuron>')
        attrs = ' activationFunction="identity" normalizationMethod="softmax"' if last else ""
        layers.append(f"<NeuralLayer{attrs}>" + "".join(neurons) + "</NeuralLayer>")
    top = len(model.coefs_)
    outputs = "".join(
        f'<NeuralOutput outputNeuron="{top},{k}"><DerivedField optype="categorical" '
        f'dataType="string"><NormDiscrete field={quoteattr(target)} value={quoteattr(c)}/>'
        "</DerivedField></NeuralOutput>"
        for k, c in enumerate(classes)
    )
    return (_HEAD + data_dictionary(features, target, classes)
            + '  <NeuralNetwork functionName="classification" activationFunction="rectifier" '
            'modelName="mlp">' + mining_schema(features, target)
            + f'<NeuralInputs numberOfInputs="{len(features)}">{inputs}</NeuralInputs>'
            + "".join(layers)
            + f'<NeuralOutputs numberOfOutputs="{len(classes)}">{outputs}</NeuralOutputs>'
            + "</NeuralNetwork>\n</PMML>\n")


def write(path: Path, text: str) -> Path:
    """Write a document and return its path."""
    path.write_text(text, encoding="utf-8")
    return path
