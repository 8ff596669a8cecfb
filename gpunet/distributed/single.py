"""The communicator of a single process: no MPI, every collective is the identity."""

from __future__ import annotations

from .base import Communicator, check_mean_dtypes, check_root
from .packing import group_arrays

__all__ = ["SingleComm"]


class SingleComm(Communicator):
    """``rank`` 0 of ``size`` 1. The collectives check their input like the MPI ones (so a
    bad call fails on a laptop too) and return the arrays unchanged, without copying."""

    rank, size, local_rank, local_size = 0, 1, 0, 1

    def allreduce_sum(self, arrays):
        arrays, _ = group_arrays(arrays, "allreduce_sum")
        return arrays

    def allreduce_mean(self, arrays):
        arrays, groups = group_arrays(arrays, "allreduce_mean")
        check_mean_dtypes(groups)
        return arrays

    def bcast(self, arrays, root=0):
        check_root(root, 1)
        arrays, _ = group_arrays(arrays, "bcast")
        return arrays

    def barrier(self):
        return None
