"""What every model shares: the CS231n contract plus buffers, moving between backends,
casting inputs to the model's dtype, and L2 regularisation 0.5 * reg * sum(W**2)."""

from __future__ import annotations

import numpy as np

from .. import _validate
from ..backend import asarray, get_array_module
from ..backend.namespace import (
    backend_of,
    from_host,
    to_backend,
    to_numpy,
    xp_dtype,
    zeros,
)
from ..data.batches import rows
from ..init import as_rng, weight_std
from ..serialize import Rebuildable, save_model


class Model(Rebuildable):
    """Base of the CS231n-style models.

    Contract: ``params`` (name -> array); ``loss(X, y=None)`` returns scores (N, C) in
    test mode when y is None, else ``(loss, grads)`` in training mode with ``grads``
    keyed like ``params``. Also: ``get_buffers()``/``set_buffers()`` for non-trainable
    state, ``rng`` (dropout masks), ``to(backend)``.
    """

    reg_names: tuple[str, ...] = ()  # params that get L2 regularisation (weights, not biases)

    def __init__(self, reg: float, dtype, seed):
        if not isinstance(reg, (int, float)) or reg < 0:
            raise ValueError(f"reg must be a number >= 0, got {reg!r}")
        self.reg = float(reg)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a floating dtype such as 'float32', got {dtype!r}")
        self.rng = as_rng(seed)
        self.params: dict = {}

    def _new(self, host: np.ndarray):
        """A parameter from host values, in the model's dtype on the current backend."""
        return asarray(host, dtype=self.dtype)

    def _weight(self, shape, weight_scale, fan_in: int, fan_out: int):
        """N(0, std^2) weights: std = weight_scale (a number, as CS231n) or "he" / "xavier"."""
        return self._new(self.rng.standard_normal(shape) * weight_std(weight_scale, fan_in, fan_out))

    def _input(self, X):
        """X in the model's dtype (CS231n's ``X.astype(self.dtype)``), without a copy when it already is."""
        xp = get_array_module(X, next(iter(self.params.values())))
        dtype = xp_dtype(xp, self.dtype)
        return X if X.dtype == dtype else xp.astype(X, dtype)

    def _regularize(self, loss, grads):
        """Add 0.5 * reg * sum(W**2) to the loss and reg * W to the weight gradients."""
        if self.reg == 0:
            return loss, grads
        xp = get_array_module(*(self.params[n] for n in self.reg_names))
        for name in self.reg_names:
            w = self.params[name]
            loss = loss + 0.5 * self.reg * xp.sum(w * w)
            grads[name] = grads[name] + self.reg * w
        return loss, grads

    def get_buffers(self) -> dict:
        """Non-trainable state arrays by name (e.g. batchnorm running statistics)."""
        return {}

    def set_buffers(self, buffers: dict) -> None:
        unknown = set(buffers) - set(self.get_buffers())
        if unknown:
            raise ValueError(f"{type(self).__name__} has no buffers {sorted(unknown)}")

    def to(self, backend: str):
        """Move parameters and buffers to ``backend`` in place; returns the model."""
        self.params.update(to_backend(self.params, backend))
        self.set_buffers(to_backend(self.get_buffers(), backend))
        return self

    def loss(self, X, y=None):  # pragma: no cover - every model defines it
        """Scores (N, C) when y is None, else (loss, grads)."""
        raise NotImplementedError

    def __call__(self, X):
        """Scores (N, C) of X in test mode: ``model.loss(X)``."""
        return self.loss(X)

    def predict(self, X, batch_size: int = 1000):
        """Class labels (N,) int64 of X (N, ...): the argmax of the test-mode scores,
        computed in batches of ``batch_size`` on the model's device. The labels are on
        X's backend (NumPy in, NumPy out), read back once."""
        fn = f"{type(self).__name__}.predict"
        batch_size = _validate.integer("batch_size", batch_size, low=1, fn=fn)
        source = backend_of(X)
        if source is None or X.ndim < 1:
            raise _validate.ArgumentError(f"{fn}: X must be an array of samples (N, ...), got {X!r}")
        like = next(iter(self.params.values()))
        xp = get_array_module(like)
        parts = []
        n = X.shape[0]
        for start in range(0, n, batch_size):
            scores = self.loss(rows(X, slice(start, min(start + batch_size, n)), like))
            parts.append(xp.astype(xp.argmax(scores, axis=1), xp.int64))
        labels = xp.concat(parts) if parts else zeros((0,), like, dtype=xp.int64)
        if backend_of(labels) == source:
            return labels
        host = to_numpy(labels)
        return host if source == "numpy" else from_host(host, X)

    def save(self, path):
        """Write this model (its description, parameters and buffers) to ``path`` (.npz);
        ``gpunet.load_model(path)`` rebuilds it. Returns the path written."""
        return save_model(self, path)
