"""What every model shares: the CS231n contract plus buffers, moving between backends,
casting inputs to the model's dtype, and L2 regularisation 0.5 * reg * sum(W**2).

``model.params`` is a checked table (:class:`Params`): assigning an entry must keep its
shape, the model's dtype and its backend, so an assignment can never silently change
what the model computes in (a float64 array into a float32 model is refused with the
way to build the model in float64).
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

from .. import _validate
from ..backend import asarray, get_array_module, get_backend
from ..backend.namespace import (
    backend_of,
    from_host,
    to_backend,
    to_numpy,
    xp_dtype,
    zeros,
)
from ..backend.ops import host_dtype
from ..data.batches import rows
from ..init import as_rng, check_shape, weight_std
from ..serialize import Rebuildable, save_model


class Params(MutableMapping):
    """A model's parameters by name. Assigning an entry checks the new array against the
    model (its dtype) and the entry it replaces (its shape and backend). Moving the model
    to another backend takes either ``update`` with every entry on that one backend, or
    entries assigned under ``gpunet.use_backend`` of it (:meth:`Model.to` does one of the
    two). Entries cannot be added or removed."""

    def __init__(self, owner: str, dtype, table: MutableMapping):
        self._owner, self._dtype = owner, np.dtype(dtype)
        self._table = table
        for name, value in table.items():
            self._check_dtype(name, value)

    def _where(self, name) -> str:
        return f"{self._owner}.params[{name!r}]"

    def _check_dtype(self, name, value) -> None:
        try:
            is_array = backend_of(value) is not None
        except TypeError:  # neither an array nor a number
            is_array = False
        if not is_array:
            raise _validate.ArgumentError(
                f"{self._where(name)} must be an array, got {type(value).__name__}; "
                f"convert it with gpunet.asarray(value, dtype='{self._dtype}')"
            )
        given = host_dtype(value.dtype)
        if given != self._dtype:
            raise _validate.ArgumentError(
                f"{self._where(name)}: the model computes in {self._dtype}, got a {given} array "
                f"(nothing is cast silently); build the model in {given} "
                f"({self._owner}(..., dtype=np.{given})) or cast the array "
                f"(gpunet.asarray(value, dtype='{self._dtype}'))"
            )

    def _check(self, name, value, moving_to=None) -> None:
        """Refuse ``value`` for entry ``name`` unless it keeps the entry's shape, the model's
        dtype and the entry's backend (or is on ``moving_to`` / the current backend)."""
        if name not in self._table:
            raise KeyError(f"{self._owner} has no parameter named {name!r}; its parameters are "
                           f"{', '.join(map(str, self._table))}")
        self._check_dtype(name, value)
        old = self._table[name]
        if tuple(value.shape) != tuple(old.shape):
            raise _validate.ArgumentError(
                f"{self._where(name)}: expected shape {tuple(old.shape)}, got {tuple(value.shape)}"
            )
        have, given = backend_of(old), backend_of(value)
        if given not in (have, moving_to, get_backend()):
            raise _validate.ArgumentError(
                f"{self._where(name)}: the model's parameters live on {have}, got a {given} "
                f"array; move it first (gpunet.asarray(value) under gpunet.use_backend('{have}')) "
                f"or move the whole model with model.to('{given}')"
            )

    def __setitem__(self, name, value) -> None:
        self._check(name, value)
        self._table[name] = value

    def update(self, other=(), /, **kwargs) -> None:
        """Assign several entries, all or nothing (each is checked before any is assigned).
        Replacing every entry by arrays of one backend moves the model there."""
        new = dict(other, **kwargs)
        backends = {backend_of(v) for v in new.values() if hasattr(v, "shape")}
        moving_to = backends.pop() if set(new) == set(self._table) and len(backends) == 1 else None
        for name, value in new.items():
            self._check(name, value, moving_to)
        for name, value in new.items():
            self._table[name] = value

    def __getitem__(self, name):
        return self._table[name]

    def __delitem__(self, name):
        raise TypeError(f"parameters cannot be removed from a model ({self._where(name)})")

    def __iter__(self):
        return iter(self._table)

    def __len__(self):
        return len(self._table)

    def __repr__(self):
        return "Params(" + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items()) + ")"


class Model(Rebuildable):
    """Base of the CS231n-style models.

    Contract: ``params`` (name -> array, checked: :class:`Params`); ``loss(X, y=None)``
    returns scores (N, C) in test mode when y is None, else ``(loss, grads)`` in training
    mode with ``grads`` keyed like ``params``. Also: ``get_buffers()``/``set_buffers()``
    for non-trainable state, ``rng`` (dropout masks), ``to(backend)``.
    """

    reg_names: tuple[str, ...] = ()  # params that get L2 regularisation (weights, not biases)

    def __init__(self, reg: float, dtype, seed):
        self.reg = _validate.real("reg", reg, low=0.0, fn=type(self).__name__)
        self.dtype = _validate.float_dtype("dtype", dtype, fn=type(self).__name__)
        self.rng = as_rng(_validate.seed("seed", seed))
        self.params = {}

    @property
    def params(self) -> MutableMapping:
        """The parameter table: a :class:`Params` (or the mapping of a ``gpunet.nn`` network)."""
        return self._params

    @params.setter
    def params(self, table: MutableMapping) -> None:
        """Replace the whole table (as a model's constructor does). A dict is wrapped in a
        :class:`Params` (every entry must be an array of the model's dtype); another mapping
        (e.g. ``gpunet.nn``'s, which checks its own entries) is kept as it is."""
        self._params = Params(type(self).__name__, self.dtype, table) if type(table) is dict else table

    def _sizes(self, **sizes) -> list[int]:
        """Each keyword (a layer or input size) checked as an int >= 1, in order."""
        return [_validate.integer(name, v, low=1, fn=type(self).__name__) for name, v in sizes.items()]

    def _new(self, host: np.ndarray):
        """A parameter from host values, in the model's dtype on the current backend."""
        return asarray(host, dtype=self.dtype)

    def _weight(self, shape, weight_scale, fan_in: int, fan_out: int):
        """N(0, std^2) weights: std = weight_scale (a number, as CS231n) or "he" / "xavier"."""
        fn = type(self).__name__
        std = weight_std(weight_scale, fan_in, fan_out, name="weight_scale", fn=fn)
        return self._new(self._standard_normal(check_shape(shape, fn)) * std)

    def _standard_normal(self, shape) -> np.ndarray:
        """Host float64 N(0, 1) draws for the initial weights (from ``self.rng``)."""
        return self.rng.standard_normal(shape)

    def _input(self, X):
        """X in the model's dtype (CS231n's ``X.astype(self.dtype)``), without a copy when it already is."""
        try:
            is_array = backend_of(X) is not None
        except TypeError:
            is_array = False
        xp = get_array_module(X, next(iter(self.params.values()))) if is_array else None
        if xp is None or not xp.isdtype(X.dtype, ("bool", "integral", "real floating")):
            given = getattr(X, "dtype", type(X).__name__)
            raise _validate.ArgumentError(
                f"{type(self).__name__}: X must be an array of samples (N, ...) of real numbers, got "
                f"{given}; convert it with gpunet.asarray(X, dtype='{self.dtype}')")
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
