"""Models for the optimization tests (and the benchmark): trained here on the bundled digits.

* :func:`digits_784` turns the 8x8 digits into 28x28 images (each pixel 3x3, 2 pixels of
  border), flattened to 784 features, so an MNIST-sized network can be trained on them.
* :func:`train_digits_mlp` trains a dense network (default 784-2048-2048-10, ReLU) with
  scikit-learn and writes it as ONNX (MatMul + Add + Relu per layer, dynamic batch).
* :func:`train_digits_cnn` trains a small CNN on the 8x8 digits with torch and writes it as
  ONNX (Conv + Relu, MaxPool, Flatten, MatMul + Add).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ferry.demo import SeedData

__all__ = [
    "cnn_from_layers", "digits_784", "mlp_from_layers", "train_digits_cnn", "train_digits_mlp",
]


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


def cnn_from_layers(path: Path, conv: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
                    dense: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], *,
                    side: int) -> Path:
    """Write a CNN as ONNX: input ``x`` (batch, side*side) reshaped to (batch, 1, side, side),
    Conv 3x3 (pad 1) + Relu per conv layer, MaxPool 2x2, Flatten, then MatMul + Add (+ Relu
    between) per dense layer; output ``scores``."""
    inits = [numpy_helper.from_array(np.array([-1, 1, side, side], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["img"])]
    prev = "img"
    for i, (w, b) in enumerate(conv):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"cw{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"cb{i}")]
        nodes += [helper.make_node("Conv", [prev, f"cw{i}", f"cb{i}"], [f"c{i}"],
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"cr{i}"])]
        prev = f"cr{i}"
    nodes += [helper.make_node("MaxPool", [prev], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("Flatten", ["pool"], ["flat"], axis=1)]
    prev = "flat"
    for i, (w, b) in enumerate(dense):
        last = i == len(dense) - 1
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], ["scores" if last else f"pre{i}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"pre{i}"], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", side * side])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                       ["batch", dense[-1][0].shape[1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def train_digits_cnn(path: Path, data: SeedData, *, channels: tuple[int, int] = (16, 32),
                     hidden: int = 128, epochs: int = 15, seed: int = 0) -> tuple[Path, float]:
    """Train a small CNN on the 8x8 digits with torch (CPU) and write it to ``path`` as ONNX.

    Conv(1->16) Relu Conv(16->32) Relu MaxPool(2) Flatten Dense(512->128) Relu Dense(128->10);
    input ``x`` is the 64 features, as the seed network takes them.

    Returns:
        The path and the network's own accuracy on the test split.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    c1, c2 = channels
    net = nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c2 * 16, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    x = torch.from_numpy(data.x_train.reshape(-1, 1, 8, 8))
    y = torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for index in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[index]), y[index]).backward()
            optimizer.step()
    with torch.no_grad():
        scores = net(torch.from_numpy(data.x_test.reshape(-1, 1, 8, 8)))
    accuracy = float((scores.argmax(1).numpy() == data.y_test).mean())
    params = [p.detach().numpy() for p in net.parameters()]
    cnn_from_layers(path, [(params[0], params[1]), (params[2], params[3])],
                    [(params[4].T, params[5]), (params[6].T, params[7])], side=8)
    return path, accuracy
