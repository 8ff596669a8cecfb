"""Data-parallel training across processes and machines, on the MPI every cluster has.

A *communicator* (:class:`Communicator`) is a group of ``size`` processes, this one being
``rank``, with four collectives: ``allreduce_sum(arrays)``, ``allreduce_mean(arrays)``,
``bcast(arrays, root)`` and ``barrier()``. Three implementations:

- :class:`SingleComm`: one process, no MPI; every collective is the identity.
- :class:`~gpunet.distributed.mpi.MPIComm`: mpi4py's buffer API (``Allreduce``/``Bcast``
  on one packed buffer per dtype per call, never the pickle-based lowercase calls). CuPy
  arrays go through host memory unless ``cuda_aware=True``.
- :class:`~gpunet.distributed.nccl.NCCLComm`: CuPy arrays over NCCL, its unique id sent
  over MPI; loaded only when asked for.

Importing this package imports neither mpi4py nor CuPy. Pass a communicator to
``Solver(..., comm=comm)`` and launch with ``mpiexec -n 4 python -m mpi4py train.py``
(``-m mpi4py`` makes a failing rank abort the whole job instead of leaving the others
waiting forever in a collective).
"""

from __future__ import annotations

from .base import Communicator
from .single import SingleComm

__all__ = ["Communicator", "MPIComm", "NCCLComm", "SingleComm", "get_comm", "launched_by_mpi",
           "use_local_device"]

KINDS = ("auto", "single", "mpi", "nccl")


def get_comm(kind: str = "auto", cuda_aware: bool = False) -> Communicator:
    """A communicator of ``kind``:

    - ``"auto"``: MPI when this process was started by an MPI launcher (mpiexec, mpirun,
      srun), else a single process;
    - ``"single"``: :class:`SingleComm`; ``"mpi"``: :class:`MPIComm` over ``COMM_WORLD``
      (``cuda_aware``: hand CuPy buffers to MPI directly); ``"nccl"``: :class:`NCCLComm`.

    Raises ImportError naming ``pip install "mpi4py>=4.0"`` when mpi4py is needed but missing.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "auto":
        from .mpi import launched_by_mpi as _launched

        kind = "mpi" if _launched() else "single"
    if kind == "single":
        return SingleComm()
    if kind == "mpi":
        from .mpi import MPIComm as _MPIComm

        return _MPIComm(cuda_aware=cuda_aware)
    from .nccl import NCCLComm as _NCCLComm

    return _NCCLComm()


def use_local_device(comm: Communicator) -> int:
    """Make GPU ``comm.local_rank % device_count`` CuPy's current device (one GPU per
    process on a machine); returns its id. Call before creating the model."""
    from ..backend.namespace import namespace

    cupy = namespace("cupy")
    device = comm.local_rank % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device


def __getattr__(name):  # the MPI and NCCL classes load mpi4py/CuPy only when used
    if name in ("MPIComm", "launched_by_mpi"):
        from . import mpi

        return getattr(mpi, name)
    if name == "NCCLComm":
        from .nccl import NCCLComm

        return NCCLComm
    raise AttributeError(f"module 'gpunet.distributed' has no attribute {name!r}")
