"""PMML documents laid out the way sklearn2pmml writes them, from fitted scikit-learn models.

sklearn2pmml (JPMML-SkLearn on the JVM) is the most used PMML exporter for scikit-learn. It
needs Java and is not installed here, so these builders write what its converter writes for
each model type, following its sources (jpmml-sklearn ``sklearn/**`` and jpmml-converter
``MiningModelUtil``, ``ModelUtil``, ``FieldNameUtil``):

* Field names: features ``x1``..``xN`` for a NumPy ``X`` (a DataFrame's column names
  otherwise), target ``y`` (or the Series' name). Output fields are named
  ``FieldNameUtil.create(function, arg)``: ``probability(<class>)`` for ``predict_proba``
  (one per class, ``feature="probability" value="<class>"``) and ``decisionFunction(<class>)``
  for the hidden per-class scores of a model chain (``isFinalResult="false"``). Classes are
  written as the ``y`` values are: ``0``/``1`` for integers, ``setosa`` for strings.
* Trees: ``DataField``s of type ``float`` (scikit-learn's trees compare float32), thresholds
  rounded down to float32 (``FloatUtil.floor``), binary splits compacted (the right child's
  predicate becomes ``<True/>`` and its subtree is lifted into the parent;
  ``splitCharacteristic="multiSplit"``), classification leaves carry ``ScoreDistribution``
  record counts (``tree_.value``, which scikit-learn >= 1.4 stores as fractions).
* Model chains: a ``GradientBoostingClassifier`` is a ``MiningModel`` with
  ``multipleModelMethod="modelChain"``: one regression ``MiningModel`` per class column
  (``sum`` of trees, ``Targets`` rescaling by the learning rate plus the initial raw
  prediction, output ``decisionFunction(<class>)``), then a classification
  ``RegressionModel`` (``logit`` for two classes, ``softmax`` for more) that carries the
  ``probability(<class>)`` outputs. The outputs sit on that final segment, not on the top
  model (``Classifier.encodePredictProbaOutput`` → ``MiningModelUtil.getFinalModel``).
* Regressors write no ``Output``: PMML4S then names the prediction ``predicted_<target>``.

Each builder returns the document text; :func:`write` stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

__all__ = [
    "decision_tree",
    "document",
    "gradient_boosting_classifier",
    "gradient_boosting_regressor",
    "linear_regression",
    "logistic_regression",
    "mlp_classifier",
    "random_forest",
    "write",
]

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<PMML xmlns="http://www.dmg.org/PMML-4_4" '
    'xmlns:data="http://jpmml.org/jpmml-model/InlineTable" version="4.4">\n'
    '\t<Header>\n\t\t<Application name="SkLearn2PMML package" version="0.110.0"/>\n'
    "\t\t<Timestamp>2026-01-01T00:00:00Z</Timestamp>\n\t</Header>\n"
)


def _num(value: float) -> str:
    return repr(float(value))


def _float_threshold(value: float) -> str:
    """The largest float32 not above ``value`` (jpmml-sklearn ``TreeUtil.toFloatThreshold``)."""
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf))
    return str(f)


def _class_values(classes: Sequence[Any]) -> tuple[list[str], str]:
    """The classes as PMML writes them, and the target's dataType."""
    if all(isinstance(c, int | np.integer) for c in classes):
        return [str(int(c)) for c in classes], "integer"
    return [str(c) for c in classes], "string"


def _data_dictionary(features: Sequence[str], target: str, classes: Sequence[Any] | None,
                     feature_type: str) -> str:
    rows = []
    if classes is None:
        rows.append(f'\t\t<DataField name={quoteattr(target)} optype="continuous" '
                    'dataType="double"/>')
    else:
        values, kind = _class_values(classes)
        body = "".join(f"\n\t\t\t<Value value={quoteattr(v)}/>" for v in values)
        rows.append(f'\t\t<DataField name={quoteattr(target)} optype="categorical" '
                    f'dataType="{kind}">{body}\n\t\t</DataField>')
    rows += [f'\t\t<DataField name={quoteattr(f)} optype="continuous" dataType="{feature_type}"/>'
             for f in features]
    return (f'\t<DataDictionary numberOfFields="{len(rows)}">\n' + "\n".join(rows)
            + "\n\t</DataDictionary>\n")


def _mining_schema(features: Sequence[str], target: str | None) -> str:
    rows = [] if target is None else [f'<MiningField name={quoteattr(target)} usageType="target"/>']
    rows += [f"<MiningField name={quoteattr(f)}/>" for f in features]
    return "<MiningSchema>" + "".join(rows) + "</MiningSchema>"


def _probability_output(classes: Sequence[Any]) -> str:
    values, _ = _class_values(classes)
    fields = "".join(
        f'<OutputField name={quoteattr(f"probability({v})")} optype="continuous" '
        f'dataType="double" feature="probability" value={quoteattr(v)}/>'
        for v in values
    )
    return f"<Output>{fields}</Output>"


def _decision_output(name: str) -> str:
    return (f'<Output><OutputField name={quoteattr(name)} optype="continuous" dataType="double" '
            'isFinalResult="false"/></Output>')


def _pmml(features: Sequence[str], target: str, classes: Sequence[Any] | None, model: str,
          feature_type: str = "double") -> str:
    return (_HEAD + _data_dictionary(features, target, classes, feature_type) + "\t" + model
            + "\n</PMML>\n")


# ---------------------------------------------------------------- linear models


def _regression_table(coefs: Sequence[float], intercept: float, features: Sequence[str],
                      category: str | None = None) -> str:
    cat = "" if category is None else f" targetCategory={quoteattr(category)}"
    predictors = "".join(f'<NumericPredictor name={quoteattr(f)} coefficient="{_num(c)}"/>'
                         for f, c in zip(features, coefs, strict=True) if c != 0.0)
    return f'<RegressionTable intercept="{_num(intercept)}"{cat}>{predictors}</RegressionTable>'


def linear_regression(model: Any, features: Sequence[str], target: str = "y") -> str:
    """``LinearRegression``: a regression ``RegressionModel``, no ``Output``."""
    body = ('<RegressionModel functionName="regression" algorithmName="least squares">'
            + _mining_schema(features, target)
            + _regression_table(model.coef_, model.intercept_, features)
            + "</RegressionModel>")
    return _pmml(features, target, None, body)


def logistic_regression(model: Any, features: Sequence[str], target: str = "y") -> str:
    """``LogisticRegression``: ``logit`` over one table for two classes, ``softmax`` for more."""
    values, _ = _class_values(list(model.classes_))
    if len(values) == 2:  # LinearClassifier: the active table, then the passive one
        tables = (_regression_table(model.coef_[0], model.intercept_[0], features, values[1])
                  + f'<RegressionTable intercept="0.0" targetCategory={quoteattr(values[0])}/>')
        method = "logit"
    else:  # LogisticRegression.encodeMultinomialModel
        tables = "".join(_regression_table(model.coef_[k], model.intercept_[k], features, v)
                         for k, v in enumerate(values))
        method = "softmax"
    body = (f'<RegressionModel functionName="classification" normalizationMethod="{method}">'
            + _mining_schema(features, target) + _probability_output(model.classes_)
            + tables + "</RegressionModel>")
    return _pmml(features, target, model.classes_, body)


# ---------------------------------------------------------------- trees


def _leaf_distribution(tree: Any, node: int, values: Sequence[str]) -> str:
    counts = tree.value[node][0]
    dist = "".join(f'<ScoreDistribution value={quoteattr(v)} recordCount="{_num(c)}"/>'
                   for v, c in zip(values, counts, strict=True))
    score = values[int(np.argmax(counts))]
    return f"score={quoteattr(score)} recordCount=\"{_num(counts.sum())}\">{dist}"


def _split(tree: Any, node: int, features: Sequence[str]) -> str:
    name = features[tree.feature[node]]
    return (f'<SimplePredicate field={quoteattr(name)} operator="lessOrEqual" '
            f'value="{_float_threshold(tree.threshold[node])}"/>')


def _compact(tree: Any, node: int, features: Sequence[str], values: Sequence[str] | None,
             predicate: str) -> str:
    """A node with its predicate, its children compacted (jpmml-sklearn TreeModelCompactor)."""
    left = tree.children_left[node]
    if left == -1:
        if values is None:
            return f'<Node score="{_num(tree.value[node][0][0])}">{predicate}</Node>'
        return f"<Node {_leaf_distribution(tree, node, values)}{predicate}</Node>"
    score, children = _chain(tree, node, features, values)
    attr = "" if score is None else f' score="{_num(score)}"'
    return f"<Node{attr}>{predicate}{children}</Node>"


def _chain(tree: Any, node: int, features: Sequence[str],
           values: Sequence[str] | None) -> tuple[float | None, str]:
    """The children of a split node once its right child (``<True/>``) is lifted into it.

    A regression leaf on the right becomes the node's own score (noTrueChildStrategy
    ``returnLastPrediction``); a classification leaf stays as a ``<True/>`` node.
    """
    left, right = tree.children_left[node], tree.children_right[node]
    first = _compact(tree, left, features, values, _split(tree, node, features))
    if tree.children_left[right] != -1:
        score, rest = _chain(tree, right, features, values)
        return score, first + rest
    if values is None:
        return float(tree.value[right][0][0]), first
    return None, first + _compact(tree, right, features, values, "<True/>")


def _tree_model(tree: Any, features: Sequence[str], values: Sequence[str] | None,
                target: str | None, output: str = "") -> str:
    used = sorted({int(i) for i in tree.feature if i >= 0})
    schema = _mining_schema([features[i] for i in used], target)
    if values is None:
        head = ('<TreeModel functionName="regression" noTrueChildStrategy="returnLastPrediction" '
                'missingValueStrategy="nullPrediction" splitCharacteristic="multiSplit">')
    else:
        head = ('<TreeModel functionName="classification" missingValueStrategy="nullPrediction" '
                'splitCharacteristic="multiSplit">')
    return head + schema + output + _compact(tree, 0, features, values, "<True/>") + "</TreeModel>"


def decision_tree(model: Any, features: Sequence[str], target: str = "y") -> str:
    """``DecisionTreeClassifier``: one compacted ``TreeModel`` with the probability outputs."""
    values, _ = _class_values(list(model.classes_))
    body = _tree_model(model.tree_, features, values, target,
                       _probability_output(model.classes_))
    # The top model's MiningSchema lists every feature the tree uses.
    return _pmml(features, target, model.classes_, body, feature_type="float")


def _segments(models: Sequence[str]) -> str:
    return "".join(f'<Segment id="{i + 1}"><True/>{m}</Segment>' for i, m in enumerate(models))


def random_forest(model: Any, features: Sequence[str], target: str = "y") -> str:
    """``RandomForestClassifier``: a ``MiningModel`` averaging the trees' distributions."""
    values, _ = _class_values(list(model.classes_))
    trees = [_tree_model(e.tree_, features, values, target) for e in model.estimators_]
    body = ('<MiningModel functionName="classification">' + _mining_schema(features, target)
            + _probability_output(model.classes_)
            + '<Segmentation multipleModelMethod="average" missingPredictionTreatment="returnMissing">'
            + _segments(trees) + "</Segmentation></MiningModel>")
    return _pmml(features, target, model.classes_, body, feature_type="float")


def _sum_of_trees(trees: Sequence[Any], features: Sequence[str], learning_rate: float,
                  initial: float, output: str = "", target: str | None = None) -> str:
    """GradientBoostingUtil.encodeGradientBoosting: Σ trees, rescaled by the learning rate."""
    models = [_tree_model(t.tree_, features, None, None) for t in trees]
    used = sorted({int(i) for t in trees for i in t.tree_.feature if i >= 0})
    named = "" if target is None else f" field={quoteattr(target)}"  # a segment's is anonymous
    return ('<MiningModel functionName="regression">'
            + _mining_schema([features[i] for i in used], target) + output
            + f'<Targets><Target{named} rescaleFactor="{_num(learning_rate)}" '
              f'rescaleConstant="{_num(initial)}"/></Targets>'
            + '<Segmentation multipleModelMethod="sum" missingPredictionTreatment="returnMissing">'
            + _segments(models) + "</Segmentation></MiningModel>")


def _initial_raw(model: Any, x: np.ndarray) -> np.ndarray:
    """The initial raw prediction per class column: the decision function less the trees'."""
    x = np.asarray(x[:1], dtype=np.float32)
    raw = np.asarray(model.decision_function(x), dtype=np.float64).reshape(1, -1)[0]
    trees = np.asarray([[t.predict(x)[0] for t in row] for row in model.estimators_])
    return raw - model.learning_rate * trees.sum(axis=0)


def gradient_boosting_classifier(model: Any, features: Sequence[str], x: np.ndarray,
                                 target: str = "y") -> str:
    """``GradientBoostingClassifier``: a model chain of per-class sums and a final
    ``RegressionModel`` that carries ``probability(<class>)`` (``x``: a row to read the
    initial raw prediction from)."""
    values, _ = _class_values(list(model.classes_))
    initial = _initial_raw(model, x)
    columns = range(1, 2) if len(values) == 2 else range(len(values))
    segments, tables = [], []
    for k in columns:
        name = f"decisionFunction({values[k]})"
        trees = model.estimators_[:, 0 if len(values) == 2 else k]
        segments.append(_sum_of_trees(trees, features, model.learning_rate,
                                      initial[0 if len(values) == 2 else k], _decision_output(name)))
        tables.append(f'<RegressionTable intercept="0.0" targetCategory={quoteattr(values[k])}>'
                      f'<NumericPredictor name={quoteattr(name)} coefficient="1.0"/>'
                      "</RegressionTable>")
    if len(values) == 2:  # MiningModelUtil.createBinaryLogisticClassification
        tables.append(f'<RegressionTable intercept="0.0" targetCategory={quoteattr(values[0])}/>')
    method = "logit" if len(values) == 2 else "softmax"
    hidden = [f"decisionFunction({values[k]})" for k in columns]
    final = (f'<RegressionModel functionName="classification" normalizationMethod="{method}">'
             + _mining_schema(hidden, target) + _probability_output(model.classes_)
             + "".join(tables) + "</RegressionModel>")
    body = ('<MiningModel functionName="classification">' + _mining_schema(features, target)
            + '<Segmentation multipleModelMethod="modelChain" missingPredictionTreatment="returnMissing">'
            + _segments([*segments, final]) + "</Segmentation></MiningModel>")
    return _pmml(features, target, model.classes_, body, feature_type="float")


def gradient_boosting_regressor(model: Any, features: Sequence[str], target: str = "y") -> str:
    """``GradientBoostingRegressor``: one ``sum`` MiningModel; the initial prediction is the
    ``init_`` estimator's constant (``Targets`` ``rescaleConstant``)."""
    initial = float(np.ravel(model.init_.constant_)[0])
    body = _sum_of_trees(model.estimators_[:, 0], features, model.learning_rate, initial,
                         target=target)
    return _pmml(features, target, None, body, feature_type="float")


# ---------------------------------------------------------------- neural networks


_ACTIVATIONS = {"relu": "rectifier", "logistic": "logistic", "tanh": "tanh",
                "identity": "identity"}


def mlp_classifier(model: Any, features: Sequence[str], target: str = "y") -> str:
    """A multiclass ``MLPClassifier`` (MultilayerPerceptronUtil): ids ``input/i`` and
    ``layer/neuron``, an ``identity`` last layer normalised by ``softmax``."""
    values, _ = _class_values(list(model.classes_))
    assert len(values) >= 3, "two-class networks add a logistic transformation layer"
    inputs = "".join(
        f'<NeuralInput id="input/{i + 1}"><DerivedField optype="continuous" dataType="double">'
        f"<FieldRef field={quoteattr(f)}/></DerivedField></NeuralInput>"
        for i, f in enumerate(features)
    )
    layers, previous = [], [f"input/{i + 1}" for i in range(len(features))]
    for depth, (weights, biases) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        ids = [f"{depth + 1}/{j + 1}" for j in range(weights.shape[1])]
        neurons = "".join(
            f'<Neuron id="{ids[j]}" bias="{_num(biases[j])}">'
            + "".join(f'<Con from="{previous[i]}" weight="{_num(weights[i, j])}"/>'
                      for i in range(weights.shape[0]))
            + "</Neuron>"
            for j in range(weights.shape[1])
        )
        last = depth == len(model.coefs_) - 1
        attrs = ' activationFunction="identity" normalizationMethod="softmax"' if last else ""
        layers.append(f"<NeuralLayer{attrs}>{neurons}</NeuralLayer>")
        previous = ids
    outputs = "".join(
        f'<NeuralOutput outputNeuron="{previous[k]}"><DerivedField optype="categorical" '
        f'dataType="{_class_values(list(model.classes_))[1]}">'
        f"<NormDiscrete field={quoteattr(target)} value={quoteattr(v)}/></DerivedField>"
        "</NeuralOutput>"
        for k, v in enumerate(values)
    )
    body = (f'<NeuralNetwork functionName="classification" '
            f'activationFunction="{_ACTIVATIONS[model.activation]}">'
            + _mining_schema(features, target) + _probability_output(model.classes_)
            + f"<NeuralInputs>{inputs}</NeuralInputs>" + "".join(layers)
            + f"<NeuralOutputs>{outputs}</NeuralOutputs></NeuralNetwork>")
    return _pmml(features, target, model.classes_, body)


def document(model: Any, features: Sequence[str], x: np.ndarray, target: str = "y") -> str:
    """The document sklearn2pmml would write for ``model`` (``x``: its training inputs)."""
    kind = type(model).__name__
    if kind == "GradientBoostingClassifier":
        return gradient_boosting_classifier(model, features, x, target)
    builders = {
        "LinearRegression": linear_regression, "LogisticRegression": logistic_regression,
        "DecisionTreeClassifier": decision_tree, "RandomForestClassifier": random_forest,
        "GradientBoostingRegressor": gradient_boosting_regressor, "MLPClassifier": mlp_classifier,
    }
    return builders[kind](model, features, target)


def write(path: Path, text: str) -> Path:
    """Write a document and return its path."""
    path.write_text(text, encoding="utf-8")
    return path
