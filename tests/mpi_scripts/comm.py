"""Checks of gpunet.distributed.MPIComm for tests/test_distributed.py, run under MPI:

    mpiexec -n 2 python -m mpi4py tests/mpi_scripts/comm.py OUT_DIR

Every rank records what the collectives returned, which MPI calls they made (through a
proxy around the mpi4py communicator) and the errors they raised, in
``OUT_DIR/comm.rank{r}.npz`` (arrays) and ``OUT_DIR/comm.rank{r}.json`` (the rest).
"""

import json
import sys
from pathlib import Path

import numpy as np

from gpunet.distributed import get_comm


class Recorder:
    """Forwards to an mpi4py communicator and records the names of the methods called."""

    def __init__(self, comm):
        self._comm, self.calls = comm, []

    def __getattr__(self, name):
        attr = getattr(self._comm, name)
        if callable(attr):
            def call(*a, **k):
                self.calls.append(name)
                return attr(*a, **k)
            return call
        return attr


def inputs(rank):
    """The arrays rank ``rank`` passes: several dtypes, shapes, a non-contiguous view, a
    read-only array, a 0-d array and a Python number."""
    r = np.random.default_rng(rank)
    base = r.normal(size=(4, 6))
    ro = r.normal(size=5)
    ro.flags.writeable = False
    return [base[:, ::2],                                   # float64, non-contiguous
            r.normal(size=(3,)).astype(np.float32),
            np.asarray(r.normal()),                        # 0-d float64
            r.normal(size=(2, 2)).astype(np.float16),      # travels as float32
            ro,                                            # read-only float64
            float(rank + 1)]                               # a Python float


def main(out):
    comm = get_comm("mpi")
    rank = comm.rank
    rec = comm.comm = Recorder(comm.comm)
    res, info = {}, {"rank": rank, "size": comm.size}

    mine = inputs(rank)
    views = [mine[0]]
    rec.calls.clear()
    got = comm.allreduce_mean(mine)
    info["mean_calls"] = list(rec.calls)
    info["mean_in_place"] = [g is m for g, m in zip(got, mine)]
    info["view_base_written"] = bool(np.shares_memory(views[0], got[0]))
    for i, g in enumerate(got):
        res[f"mean{i}"] = np.asarray(g)
        info[f"mean{i}_dtype"] = str(np.asarray(g).dtype)

    rec.calls.clear()
    comm.allreduce_mean(inputs(rank))  # the same layout again: no new layout check
    info["mean_calls_again"] = list(rec.calls)

    counts = [np.array([rank + 1, 10 * rank], dtype=np.int64)]
    (res["sum_int"],) = comm.allreduce_sum(counts)

    rec.calls.clear()
    arrs = [np.full((2, 3), float(rank)), np.arange(4, dtype=np.int32) * (rank + 1),
            np.array([rank == 1, True])]
    got = comm.bcast(arrs, root=1)
    info["bcast_calls"] = list(rec.calls)
    for i, g in enumerate(got):
        res[f"bcast{i}"] = g

    errors = {}
    for name, call in [
        ("shape", lambda: comm.allreduce_mean([np.zeros(3 + rank)])),
        ("dtype", lambda: comm.bcast([np.zeros(3, np.float32 if rank else np.float64)])),
        ("int_mean", lambda: comm.allreduce_mean([np.zeros(3, np.int64)])),
        ("root", lambda: comm.bcast([np.zeros(1)], root=comm.size)),
        ("not_array", lambda: comm.allreduce_sum([[1.0, 2.0]])),
    ]:
        try:
            call()
            errors[name] = None
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    info["errors"] = errors

    rec.calls.clear()
    comm.barrier()
    info["barrier_calls"] = list(rec.calls)
    np.savez(out / f"comm.rank{rank}.npz", **res)
    (out / f"comm.rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
