"""A model's parameters as a PyTorch ``state_dict``: the names, shapes and layouts that the
equivalent ``torch.nn.Sequential`` loads with ``load_state_dict`` (host NumPy arrays in the
model's dtype; a Linear weight is (out, in) = our ``W.T``, everything else is equal).

The equivalent Sequential of each model (``torch.nn`` layers, in this order):

- ``FullyConnectedNet``: per hidden layer ``Linear``, then ``BatchNorm1d`` or ``LayerNorm``
  with normalization, ``ReLU``, then ``Dropout`` if ``dropout_keep_ratio < 1``; a last ``Linear``.
- ``TwoLayerNet``: ``Linear, ReLU (or Sigmoid), Linear``.
- ``ThreeLayerConvNet``: ``Conv2d(C, F, fs, padding=fs // 2), ReLU, MaxPool2d(2), Flatten,
  Linear, ReLU, Linear``.
- ``LogisticClassifier``: ``Linear(D, 1), Sigmoid`` (its output is p(y = 1)).
- ``nn.Classifier(net)``: ``net`` itself, layer for layer (a nested ``Sequential`` nests).

BatchNorm exports ``running_mean``, ``running_var`` and ``num_batches_tracked = 0`` (gpunet
does not count batches; PyTorch uses it only with ``momentum=None``).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from . import nn
from .backend import to_numpy
from .models import (
    FullyConnectedNet,
    LogisticClassifier,
    ThreeLayerConvNet,
    TwoLayerNet,
)

__all__ = ["save_torch_state_dict", "torch_state_dict"]

_SUPPORTED = (FullyConnectedNet, TwoLayerNet, ThreeLayerConvNet, LogisticClassifier, nn.Classifier)


def _linear(W, b) -> dict:
    return {"weight": to_numpy(W).T, **({} if b is None else {"bias": b})}


def _conv(W, b) -> dict:
    return {"weight": W, **({} if b is None else {"bias": b})}


def _norm(gamma, beta, running_mean=None, running_var=None) -> dict:
    tensors = {"weight": gamma, "bias": beta}
    if running_mean is not None:  # batch normalization
        tensors.update(running_mean=running_mean, running_var=running_var,
                       num_batches_tracked=np.array(0, dtype=np.int64))
    return tensors


# Each function below gives {"index.": {torch name: array}} for the layers with parameters.


def _fully_connected(model: FullyConnectedNet) -> dict:
    p, buffers = model.params, model.get_buffers()
    layers, i = {}, 0
    for k in range(1, model.num_layers + 1):
        layers[f"{i}."] = _linear(p[f"W{k}"], p[f"b{k}"])
        i += 1
        if k == model.num_layers:
            break
        if model.normalization is not None:
            layers[f"{i}."] = _norm(p[f"gamma{k}"], p[f"beta{k}"], buffers.get(f"bn{k}.running_mean"),
                              buffers.get(f"bn{k}.running_var"))
            i += 1
        i += 2 if model.use_dropout else 1  # ReLU (and Dropout): no parameters
    return layers


def _classifier_net(module: nn.Module, prefix: str = "") -> dict:
    if isinstance(module, nn.Sequential):
        layers = {}
        for i, child in enumerate(module.layers):
            layers.update(_classifier_net(child, f"{prefix}{i}."))
        return layers
    if isinstance(module, nn.Linear):
        return {prefix: _linear(module.W, module.b)}
    if isinstance(module, nn.Conv2d):
        return {prefix: _conv(module.W, module.b)}
    if isinstance(module, nn.BatchNorm):
        return {prefix: _norm(module.gamma, module.beta, module.running_mean, module.running_var)}
    if isinstance(module, nn.LayerNorm):
        return {prefix: _norm(module.gamma, module.beta)}
    if module.param_names or module.buffer_names:
        raise TypeError(f"torch_state_dict: no PyTorch equivalent known for {type(module).__name__}")
    return {}


def torch_state_dict(model) -> dict[str, np.ndarray]:
    """``{name: array}`` that the model's equivalent ``torch.nn.Sequential`` (see the
    module docstring) loads with ``load_state_dict(..., strict=True)`` after
    ``torch.from_numpy`` of each array."""
    if not isinstance(model, _SUPPORTED):
        raise TypeError(f"torch_state_dict supports {', '.join(c.__name__ for c in _SUPPORTED)}; "
                        f"got {type(model).__name__}")
    p = model.params
    if isinstance(model, FullyConnectedNet):
        layers = _fully_connected(model)
    elif isinstance(model, TwoLayerNet):
        layers = {"0.": _linear(p["W1"], p["b1"]), "2.": _linear(p["W2"], p["b2"])}
    elif isinstance(model, ThreeLayerConvNet):
        layers = {"0.": _conv(p["W1"], p["b1"]), "4.": _linear(p["W2"], p["b2"]),
                  "6.": _linear(p["W3"], p["b3"])}
    elif isinstance(model, LogisticClassifier):
        layers = {"0.": _linear(p["W"], p["b"])}
    else:
        layers = _classifier_net(model.net)
    return {prefix + name: np.ascontiguousarray(to_numpy(a))
            for prefix, tensors in layers.items() for name, a in tensors.items()}


def save_torch_state_dict(model, path: str | PathLike) -> Path:
    """Write :func:`torch_state_dict` to ``path``: ``.npz`` (NumPy only) or ``.pt``/``.pth``
    (``torch.save`` of CPU tensors; needs PyTorch). Returns the path."""
    path = Path(path)
    state: dict[str, Any] = torch_state_dict(model)
    if path.suffix == ".npz":
        np.savez(path, **state)
    elif path.suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise ImportError(f"writing {path.name} needs PyTorch (pip install torch); "
                              "or write a .npz, which needs only NumPy") from None
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    else:
        raise ValueError(f"save_torch_state_dict writes .npz, .pt or .pth files, got {str(path)!r}")
    return path
