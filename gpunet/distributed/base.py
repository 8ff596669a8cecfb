"""The communicator interface every data-parallel backend implements, and helpers built
only on that interface."""

from __future__ import annotations

import numpy as np

from .. import _validate
from .packing import group_arrays

__all__ = ["Communicator"]


class Communicator:
    """A group of ``size`` processes; this one is number ``rank`` (0 <= rank < size).

    All methods are *collective*: every rank calls them in the same order with lists of
    arrays of the same shapes and dtypes (a mismatch raises ``ValueError`` on every rank).
    Arrays may be NumPy, CuPy or array_api_strict; results are written into the given
    arrays in place (a read-only NumPy array is replaced by a new one in the returned list).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # rank among the processes on this machine (for choosing a GPU)
    local_size: int = 1

    def allreduce_sum(self, arrays):
        """Elementwise sum over ranks of each array (numeric dtypes); returns the list."""
        return self._collective(arrays, "allreduce_sum", "sum", None)

    def allreduce_mean(self, arrays):
        """Elementwise mean over ranks of each floating array: the sum, then divided by
        ``size``; every rank receives the same bits. Returns the list."""
        return self._collective(arrays, "allreduce_mean", "mean", None)

    def bcast(self, arrays, root: int = 0):
        """Rank ``root``'s values of each array, on every rank; returns the list."""
        return self._collective(arrays, "bcast", "bcast", check_root(root, self.size))

    def _collective(self, arrays, op: str, kind: str, root):
        """Run ``kind`` ("sum", "mean" or "bcast" from ``root``) on ``arrays`` for the public
        method ``op``; each backend implements it, starting from :meth:`_checked`."""
        raise NotImplementedError

    @staticmethod
    def _checked(arrays, op: str, kind: str):
        """``(arrays, groups)``: the arrays checked and grouped by place and dtype
        (:func:`~gpunet.distributed.packing.group_arrays`); a mean needs floating dtypes."""
        arrays, groups = group_arrays(arrays, op)
        if kind == "mean":
            check_mean_dtypes(groups)
        return arrays, groups

    def barrier(self) -> None:
        """Return once every rank has called it."""
        raise NotImplementedError

    def bcast_json(self, obj, root: int = 0):
        """Rank ``root``'s ``obj`` (JSON data; NumPy arrays inside, e.g. a bit-generator
        state, are allowed) on every rank, through two buffer broadcasts (length, then
        UTF-8 bytes): no pickle. Other ranks' ``obj`` is ignored. Works on any object with
        ``rank``, ``size`` and ``bcast``: ``Communicator.bcast_json(comm, obj)``."""
        from ..checkpoint import from_json, to_json

        if self.size == 1:
            return obj
        if self.rank == root:
            text = to_json(obj)
            data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            length = np.array([data.size], dtype=np.int64)
        else:
            length = np.zeros(1, dtype=np.int64)
        (length,) = self.bcast([length], root=root)
        if self.rank != root:
            data = np.empty(int(length[0]), dtype=np.uint8)
        (data,) = self.bcast([data], root=root)
        return from_json(bytes(data).decode("utf-8"))

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


def check_mean_dtypes(groups, op: str = "allreduce_mean") -> None:
    """Raise ``TypeError`` unless every group is floating or complex (a mean of integers
    would need rounding)."""
    for g in groups:
        if g.dtype.kind not in "fc":
            raise TypeError(f"{op} needs floating arrays, got dtype {g.dtype}; use "
                            "allreduce_sum for counts")


def check_root(root, size: int) -> int:
    """``root`` as a Python int, if it is a rank in [0, size - 1]."""
    try:
        return _validate.integer("root", root, low=0, high=size - 1)
    except _validate.ArgumentError:  # the communicators' contract names it a ValueError
        raise ValueError(f"root must be a rank in [0, {size - 1}], got {root!r}") from None
