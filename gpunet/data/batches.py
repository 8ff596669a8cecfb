"""Minibatches placed on a device: one host-to-device copy per batch.

:func:`rows` is the one row-gathering helper (``BatchIterator``, the Solver's steps and its
evaluation use it): rows are sliced or gathered where the data lives (a view for a
sequential slice of host data), then moved once onto the target backend and device, so a
CuPy run copies only the rows it trains on.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from ..backend import asarray, backend_of
from ..backend.namespace import from_host, get_array_module, to_numpy

__all__ = ["BatchIterator", "iterate_minibatches", "rows"]


class BatchIterator:
    """Re-iterable minibatches ``(X_batch, y_batch)`` of ``X`` (N, ...) and ``y`` (N, ...)
    (or ``None``), on the backend current at iteration time.

    ``shuffle`` draws a new order every epoch from ``seed`` (an int, a
    ``np.random.Generator`` or None), so a fixed seed gives a fixed sequence of epochs.
    ``drop_last`` skips a final short batch. ``dtype`` converts ``X`` per batch (e.g.
    ``"float64"`` for gradient checks); ``y`` keeps its dtype.
    """

    n: int
    batch_size: int
    drop_last: bool

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
            index = slice(start, end) if order is None else order[start:end]
            Xb = rows(self.X, index, dtype=self.dtype)
            yb = None if self.y is None else rows(self.y, index)
            yield Xb, yb


def rows(a, index: slice | np.ndarray, like=None, dtype=None):
    """Rows ``index`` (a slice, or a host integer array) of ``a`` (N, ...), a host or device
    array, placed next to ``like`` (its backend and device) or, without ``like``, on the
    current backend as ``dtype``. Gathered where ``a`` lives; at most one transfer."""
    if isinstance(index, slice) or backend_of(a) == "numpy":
        part = a[index, ...]
    else:  # device data: gather on the device, no host round trip
        part = get_array_module(a).take(a, from_host(index, like=a), axis=0)
    if like is None:
        return asarray(part, dtype)
    if backend_of(part) == backend_of(like):
        return part
    return from_host(np.ascontiguousarray(to_numpy(part)), like)


def iterate_minibatches(X, y=None, batch_size: int = 64, *, shuffle: bool = False, seed=None,
                        drop_last: bool = False, dtype=None):
    """Generator of ``(X_batch, y_batch)`` on the current backend for one pass over the
    data; see :class:`BatchIterator` for the options."""
    return iter(BatchIterator(X, y, batch_size, shuffle=shuffle, seed=seed,
                              drop_last=drop_last, dtype=dtype))
