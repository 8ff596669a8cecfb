"""Minibatches moved to the current backend: one host-to-device copy per batch.

The data stays on the host (NumPy); each batch is gathered there (a view when the
order is sequential) and handed to :func:`gpunet.asarray` once, so a CuPy run copies
only the rows it trains on. Data already on a device is sliced there instead.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from ..backend import asarray, backend_of
from ..backend.namespace import from_host, get_array_module


class BatchIterator:
    """Re-iterable minibatches ``(X_batch, y_batch)`` of ``X`` (N, ...) and ``y`` (N, ...)
    (or ``None``), on the backend current at iteration time.

    ``shuffle`` draws a new order every epoch from ``seed`` (an int, a
    ``np.random.Generator`` or None), so a fixed seed gives a fixed sequence of epochs.
    ``drop_last`` skips a final short batch. ``dtype`` converts ``X`` per batch (e.g.
    ``"float64"`` for gradient checks); ``y`` keeps its dtype.
    """

    def __init__(self, X, y=None, batch_size: int = 64, *, shuffle: bool = False, seed=None,
                 drop_last: bool = False, dtype=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        if y is not None:
            ny = y.shape[0] if hasattr(y, "shape") else len(y)
            if ny != n:
                raise ValueError(
                    f"X and y must have the same number of samples, got {n} and {ny}; "
                    "pass matching splits, e.g. X_train with y_train"
                )
        if isinstance(X, (list, tuple)):
            X = np.asarray(X)
        if isinstance(y, (list, tuple)):
            y = np.asarray(y)
        self.X, self.y, self.n = X, y, n
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.dtype = shuffle, drop_last, dtype
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.n) if self.shuffle else None
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, self.n), self.batch_size):
            end = min(start + self.batch_size, self.n)
            idx = None if order is None else order[start:end]
            Xb = asarray(_rows(self.X, start, end, idx), self.dtype)
            yb = None if self.y is None else asarray(_rows(self.y, start, end, idx))
            yield Xb, yb


def _rows(a, start, end, idx):
    """Rows ``start:end`` of ``a`` (a view), or rows ``idx`` (gathered where ``a`` lives)."""
    if idx is None:
        return a[start:end]
    if backend_of(a) == "numpy":
        return a[idx]
    xp = get_array_module(a)  # device data: gather on the device, no host round trip
    return xp.take(a, from_host(idx, like=a), axis=0)


def iterate_minibatches(X, y=None, batch_size: int = 64, *, shuffle: bool = False, seed=None,
                        drop_last: bool = False, dtype=None):
    """Generator of ``(X_batch, y_batch)`` on the current backend for one pass over the
    data; see :class:`BatchIterator` for the options."""
    return iter(BatchIterator(X, y, batch_size, shuffle=shuffle, seed=seed,
                              drop_last=drop_last, dtype=dtype))
