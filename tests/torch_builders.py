"""Small real torch modules, trained in the test on scikit-learn's bundled data, saved as users do."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class Data:
    """Float32 features and targets, split into train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(name: str) -> Data:
    """digits, iris, diabetes or breast_cancer: standardised features, a fixed split."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x = bunch.data.astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = bunch.target
    if name == "diabetes":
        y = ((y - y.mean()) / y.std()).astype(np.float32).reshape(-1, 1)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    return Data(x[:cut], y[:cut], x[cut:], y[cut:])


def mlp(features: int, hidden: int, outputs: int) -> nn.Module:
    """Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class ErfinvNet(nn.Module):
    """An MLP with torch.erfinv, which torch.export and TorchScript take but ONNX has no op for."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(features, 8)
        self.out = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.erfinv(torch.tanh(self.hidden(x)) * 0.9))


class TwoHeads(nn.Module):
    """Two outputs (logits and probabilities) from one body: a tuple return."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.body = mlp(features, 16, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.body(x)
        return logits, torch.softmax(logits, dim=1)


def train(module: nn.Module, data: Data, *, steps: int = 150) -> nn.Module:
    """Full-batch Adam for a few steps; cross-entropy for labels, MSE for regression."""
    torch.manual_seed(0)
    for p in module.parameters():  # deterministic init regardless of test order
        nn.init.normal_(p, std=0.2)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    regression = y.dtype == torch.float32
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        out = module(x)
        loss = loss_fn(out[0] if isinstance(out, tuple) else out, y)
        loss.backward()
        optimizer.step()
    return module.eval()


def predict(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The module's own answer (first output), as numpy."""
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()


def save_pt2(module: nn.Module, example: np.ndarray, path: Path, *, dynamic: bool = True) -> Path:
    """torch.export.save, with a dynamic batch dimension unless ``dynamic`` is False."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pytree deprecations, not ours to fix
        program = torch.export.export(module, (torch.from_numpy(example),), dynamic_shapes=shapes)
        torch.export.save(program, str(path))
    return path


def save_traced(module: nn.Module, example: np.ndarray, path: Path) -> Path:
    """torch.jit.trace + torch.jit.save."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.jit is deprecated": users still have these files
        torch.jit.save(torch.jit.trace(module, torch.from_numpy(example)), str(path))
    return path


def save_scripted(module: nn.Module, path: Path) -> Path:
    """torch.jit.script + torch.jit.save (records no input shapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path
