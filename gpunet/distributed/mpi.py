"""Communicator over MPI through mpi4py, with the buffer API only (``Allreduce``, ``Bcast``
on NumPy or device buffers; never the pickle-based lowercase calls).

Each collective packs its arrays into one flat buffer per dtype (allocated once, reused),
makes one MPI call per buffer, and unpacks in place. ``allreduce_mean`` is ``Allreduce``
with ``MPI.SUM`` followed by a division by ``size`` on each rank. Every rank receives the
same reduced buffer, so the result is bit-identical on all ranks whatever order the MPI
library adds in (for 2 ranks a + b == b + a; for more, the order is fixed by the library
and its algorithm, so results may differ in the last bits between MPI libraries, process
counts or message sizes, but never between ranks of one job).

CuPy arrays are packed on the device and copied to a host buffer for MPI (one transfer
each way per dtype), unless ``cuda_aware=True`` says the MPI library reads device memory,
in which case the device buffer is handed to MPI directly.
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np

from .._install import pip_install
from .base import Communicator
from .packing import BufferPool, pack, unpack

__all__ = ["MPIComm", "import_mpi", "launched_by_mpi"]

INSTALL_HINT = (
    f"`{pip_install('mpi')}` (mpi4py only; on a laptop or in CI add an MPI library from "
    f"PyPI: `{pip_install('mpi')} mpich`; on a cluster, build mpi4py against the cluster's "
    "own MPI: `module load mpi && pip install --no-binary mpi4py mpi4py`)"
)

# Set in each process by the common launchers: MPICH/Intel MPI (hydra), PMI-2 and PMIx
# (Slurm srun, Open MPI 5), Open MPI, MVAPICH.
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                  "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun), judged
    from the launcher's environment variables or an already imported mpi4py.MPI."""
    return any(v in os.environ for v in _LAUNCHER_VARS) or "mpi4py.MPI" in sys.modules


def import_mpi():
    """``mpi4py.MPI`` (initialising MPI on first import), or ImportError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"data-parallel training over MPI needs mpi4py: {INSTALL_HINT}") from exc
    except (RuntimeError, OSError) as exc:  # mpi4py found no MPI library to load
        raise ImportError(f"mpi4py could not load an MPI library ({exc}): {INSTALL_HINT}") from exc
    return MPI


class MPIComm(Communicator):
    """A :class:`~gpunet.distributed.Communicator` over an ``mpi4py`` communicator
    (default ``MPI.COMM_WORLD``). ``cuda_aware``: hand CuPy buffers to MPI directly."""

    def __init__(self, comm=None, *, cuda_aware: bool = False):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.cuda_aware = bool(cuda_aware)
        self._pool = BufferPool()
        self._types: dict = {}
        self._agreed: set = set()

    # --- the interface -------------------------------------------------------------------
    def barrier(self):
        self.comm.Barrier()

    # --- implementation ------------------------------------------------------------------
    def _datatype(self, dtype: np.dtype):
        t = self._types.get(dtype.str)
        if t is None:
            try:  # a predefined MPI type: derived ("USER") types cannot be reduced
                t = self.MPI.Datatype.fromcode(dtype.char)
            except (KeyError, ValueError) as exc:
                raise TypeError(f"MPI has no predefined datatype for {dtype}") from exc
            self._types[dtype.str] = t
        return t

    def _run(self, kind, buf, dtype, root):
        spec = [buf, self._datatype(dtype)]
        if kind == "bcast":
            self.comm.Bcast(spec, root=root)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, spec, op=self.MPI.SUM)

    def _collective(self, arrays, op, kind, root):
        arrays, groups = self._checked(arrays, op, kind)
        if self.size == 1 or not groups:
            return arrays
        self._check_layout(op, root, groups)
        sends = kind != "bcast" or self.rank == root
        receives = kind != "bcast" or self.rank != root
        for g in groups:
            if g.place == "cupy":
                import cupy

                buf = self._pool.get(cupy, g.dtype, g.size)
                if sends:
                    pack(g, arrays, buf)
                if self.cuda_aware:
                    cupy.cuda.get_current_stream().synchronize()  # MPI does not see streams
                    self._run(kind, buf, g.dtype, root)
                else:
                    host = self._pool.get(np, g.dtype, g.size)
                    if sends:
                        buf.get(out=host)
                    self._run(kind, host, g.dtype, root)
                    if receives:
                        buf.set(host)
            else:
                buf = self._pool.get(np, g.dtype, g.size)
                if sends:
                    pack(g, arrays, buf)
                self._run(kind, buf, g.dtype, root)
            if not receives:
                continue
            if kind == "mean":
                buf /= self.size
            unpack(g, arrays, buf)
        return arrays

    def _check_layout(self, op, root, groups):
        """On the first call with a given list layout, check collectively (one small
        ``Allreduce``) that every rank passes the same shapes and dtypes; raise on all ranks."""
        layout = (op, root, tuple((g.dtype.str, tuple(g.index), tuple(g.shapes)) for g in groups))
        if layout in self._agreed:
            return
        mine = np.array([zlib.crc32(repr(layout).encode()), sum(g.size for g in groups),
                         len(groups)], dtype=np.int64)
        both = np.concatenate([mine, -mine])  # max and -min in one call
        self.comm.Allreduce(self.MPI.IN_PLACE, [both, self.MPI.INT64_T], op=self.MPI.MAX)
        if not np.array_equal(both[:3], -both[3:]):
            where = f" with root={root}" if root is not None else ""
            mine_text = "; ".join(f"{len(g.shapes)} {g.dtype} array(s) of shapes {g.shapes}"
                                  for g in groups)
            raise ValueError(
                f"{op}{where}: the ranks passed different arrays (rank {self.rank}: "
                f"{mine_text}); every rank must pass arrays of the same shapes and dtypes "
                "in the same order"
            )
        if len(self._agreed) >= 256:
            self._agreed.clear()  # every rank sees the same calls, so all clear together
        self._agreed.add(layout)
