"""Communicator for CuPy arrays over NCCL (``cupy.cuda.nccl``), set up through MPI.

Imported only when asked for (``get_comm("nccl")``): importing it loads nothing; creating
an :class:`NCCLComm` imports CuPy's NCCL binding, picks this process's GPU (``local_rank``
modulo the number of devices, unless ``device`` is given), creates the NCCL unique id on
rank 0 and sends it to the other ranks with an MPI ``Bcast`` of its bytes.

CuPy arrays are packed into one flat device buffer per dtype and reduced or broadcast by
NCCL on the current stream (no host copy, no stream synchronisation); NumPy arrays (the
Solver's evaluation counts, its start-up state) go through the MPI communicator.
``allreduce_mean`` is an NCCL sum followed by a division by ``size``.
"""

from __future__ import annotations

import numpy as np

from ..backend.cupy_probe import INSTALL_HINT
from .base import Communicator
from .mpi import MPIComm
from .packing import BufferPool, pack, unpack

__all__ = ["NCCLComm", "import_nccl"]

_NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
               "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64"}


def import_nccl():
    """``(cupy, cupy.cuda.nccl)``, or ImportError naming what is missing."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(f"the NCCL communicator needs CuPy: {INSTALL_HINT}; or use "
                          "get_comm('mpi') for NumPy arrays") from exc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CuPy warns when libnccl is missing; we raise instead
        from cupy.cuda import nccl
    if not getattr(nccl, "available", True) or not hasattr(nccl, "NcclCommunicator"):
        raise ImportError("CuPy cannot load NCCL (libnccl): pip install nvidia-nccl-cu12 (or "
                          "-cu13, matching your CuPy), or use get_comm('mpi', cuda_aware=...)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        raise ImportError(f"the NCCL communicator needs a CUDA device: {exc}") from exc
    if count == 0:
        raise ImportError("the NCCL communicator needs a CUDA device; none was found")
    return cupy, nccl


class NCCLComm(Communicator):
    """A :class:`~gpunet.distributed.Communicator` for CuPy arrays over NCCL, one GPU per
    process. ``comm``: the mpi4py communicator used for setup (default ``COMM_WORLD``)."""

    def __init__(self, comm=None, *, device=None):
        cupy, nccl = import_nccl()
        self._mpi = MPIComm(comm)
        self._cupy, self._nccl = cupy, nccl
        self.rank, self.size = self._mpi.rank, self._mpi.size
        self.local_rank, self.local_size = self._mpi.local_rank, self._mpi.local_size
        if device is None:
            device = self.local_rank % cupy.cuda.runtime.getDeviceCount()
        self.device = int(device)
        cupy.cuda.Device(self.device).use()
        width = nccl.NCCL_UNIQUE_ID_BYTES if hasattr(nccl, "NCCL_UNIQUE_ID_BYTES") else 128
        uid = np.zeros(width, dtype=np.int16)  # C chars: signed or unsigned by platform
        if self.rank == 0:
            uid[:] = nccl.get_unique_id()
        self._mpi.bcast([uid], root=0)
        self.comm = nccl.NcclCommunicator(self.size, tuple(int(c) for c in uid), self.rank)
        self._pool = BufferPool()

    def barrier(self):
        self._cupy.cuda.get_current_stream().synchronize()
        self._mpi.barrier()

    def _collective(self, arrays, op, kind, root):
        arrays, groups = self._checked(arrays, op, kind)
        host = [g for g in groups if g.place != "cupy"]
        if host:  # NumPy arrays: through MPI, in place
            idx = [i for g in host for i in g.index]
            sub = [arrays[i] for i in idx]
            fn = {"sum": self._mpi.allreduce_sum, "mean": self._mpi.allreduce_mean}.get(kind)
            sub = fn(sub) if fn else self._mpi.bcast(sub, root)
            for i, a in zip(idx, sub):
                arrays[i] = a
        dev = [g for g in groups if g.place == "cupy"]
        if self.size == 1 or not dev:
            return arrays
        self._mpi._check_layout(op, root, dev)
        cp, nccl = self._cupy, self._nccl
        stream = cp.cuda.get_current_stream().ptr
        for g in dev:
            name = _NCCL_TYPES.get(g.dtype.name)
            if name is None:
                raise TypeError(f"{op}: NCCL cannot communicate dtype {g.dtype}")
            buf = self._pool.get(cp, g.dtype, g.size)
            if kind != "bcast" or self.rank == root:
                pack(g, arrays, buf)
            ptr, dtype = buf.data.ptr, getattr(nccl, name)
            if kind == "bcast":
                self.comm.bcast(ptr, g.size, dtype, root, stream)
                if self.rank == root:
                    continue
            else:
                self.comm.allReduce(ptr, ptr, g.size, dtype, nccl.NCCL_SUM, stream)
                if kind == "mean":
                    buf /= self.size
            unpack(g, arrays, buf)
        return arrays
