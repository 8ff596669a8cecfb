"""What training keeps on the device, and the read-backs.

Per-step losses (:class:`LossWindow`) and evaluation counts (:class:`DeviceSums`) stay
where they were computed; both are read back through :func:`read_back`, the only
device-to-host transfers of a training run, at report points, never one per step.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..backend import get_array_module, to_numpy
from ..backend.namespace import backend_of, zeros


def is_array(x) -> bool:
    """Whether ``x`` is a NumPy, CuPy or array_api_strict array (not a scalar or container)."""
    if isinstance(x, (list, tuple, dict, str)):
        return False
    try:
        return backend_of(x) is not None
    except TypeError:
        return False


def copy_array(a):
    """A deep copy of an array on its own device (or of any other value)."""
    b = backend_of(a) if is_array(a) else None
    if b in ("numpy", "cupy"):
        return a.copy()
    if b == "strict":
        return get_array_module(a).asarray(a, copy=True)
    return copy.deepcopy(a)


def read_back(x) -> np.ndarray:
    """``x`` (any backend) as float64 on the host: one transfer, one sync."""
    return to_numpy(x, dtype=np.float64)


def count_nonfinite(X) -> int:
    """Number of NaN or infinite values in ``X`` (any backend; in blocks of rows, one
    read-back; 0 for integer arrays)."""
    xp = get_array_module(X)
    if not xp.isdtype(X.dtype, ("real floating", "complex floating")):
        return 0
    n, sums = X.shape[0], DeviceSums(1)
    for start in range(0, n, 4096):  # a bounded temporary, the count stays on the device
        block = X[start:min(start + 4096, n), ...]
        sums.add(xp.asarray(xp.sum(xp.astype(~xp.isfinite(block), xp.int32))))
    return int(sums.read()[0])


class LossWindow:
    """Per-step losses of one epoch kept where they were computed; read back in slices."""

    def __init__(self, steps: int):
        self.steps = steps
        self.buf: Any = None  # created at the first put, next to the loss
        self.start = 0  # first step not yet read back

    def put(self, i: int, loss) -> None:
        """Store step ``i``'s loss (a device 0-d array or a host number), no sync."""
        if self.buf is None:
            if backend_of(loss) is None:
                self.buf = np.empty(self.steps, dtype=np.float64)
            else:
                if tuple(loss.shape) != ():
                    raise ValueError(f"model.loss must return a scalar loss, got shape "
                                     f"{tuple(loss.shape)}")
                self.buf = zeros((self.steps,), like=loss)
        self.buf[i] = loss

    def read(self, stop: int) -> np.ndarray:
        """Losses of steps ``start..stop-1`` as float64 on the host (one transfer)."""
        values = read_back(self.buf[self.start:stop])
        self.start = stop
        return values


class DeviceSums:
    """Running sums of ``count`` device scalars (e.g. correct predictions and summed loss
    over batches), read back together in one transfer."""

    def __init__(self, count: int):
        self.count = count
        self.sums: list | None = None

    def add(self, *values) -> None:
        """Add one value (a 0-d array) to each sum, on the device."""
        self.sums = list(values) if self.sums is None else [
            a + b for a, b in zip(self.sums, values)]

    def read(self) -> np.ndarray:
        """The sums as float64 on the host (zeros if nothing was added)."""
        if self.sums is None:
            return np.zeros(self.count)
        xp = get_array_module(*self.sums)
        return read_back(xp.stack([xp.astype(v, xp.float64) for v in self.sums]))
