"""Models for the optimization tests (and the benchmark): trained here on the bundled digits.

* :func:`digits_784` turns the 8x8 digits into 28x28 images (each pixel 3x3, 2 pixels of
  border), flattened to 784 features, so an MNIST-sized network can be trained on them.
* :func:`train_digits_mlp` trains a dense network (default 784-2048-2048-10, ReLU) with
  scikit-learn and writes it as ONNX (MatMul + Add + Relu per layer, dynamic batch).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ferry.demo import SeedData

__all__ = ["digits_784", "mlp_from_layers", "train_digits_mlp"]


def digits_784(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """(n, 64) digits in [0, 1] -> (n, 784) float32: 28x28, each pixel 3x3, border 2."""
    images = x.reshape(-1, 8, 8)
    big = np.kron(images, np.ones((3, 3), np.float32))
    padded = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    return padded.reshape(-1, 784).astype(np.float32)


def mlp_from_layers(path: Path, weights: list[np.ndarray[Any, Any]],
                    biases: list[np.ndarray[Any, Any]], *, input_name: str = "x",
                    output_name: str = "scores") -> Path:
    """Write a ReLU MLP as ONNX: MatMul + Add per layer, Relu between layers."""
    nodes, inits, prev = [], [], input_name
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        last = i == len(weights) - 1
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"],
                                   [output_name if last else f"pre{i}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"pre{i}"], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                       ["batch", weights[0].shape[0]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       ["batch", weights[-1].shape[1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def train_digits_mlp(path: Path, data: SeedData, *, hidden: tuple[int, ...] = (2048, 2048),
                     epochs: int = 6, seed: int = 0) -> tuple[Path, float]:
    """Train a 784-hidden...-10 ReLU MLP on the 28x28 digits; write it to ``path`` as ONNX.

    Returns:
        The path and scikit-learn's own accuracy on the test split.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs, batch_size=64,
                        random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs, on purpose
        clf.fit(digits_784(data.x_train), data.y_train)
    accuracy = float(clf.score(digits_784(data.x_test), data.y_test))
    mlp_from_layers(path, list(clf.coefs_), list(clf.intercepts_))
    return path, accuracy
