"""Everything in training that knows about processes: the rest of the package only passes
the object :func:`make_parallel` returns along.

:class:`SingleProcess` (no communicator) does nothing: shards are the whole data, reduces
return their input, rank 0 is this process. :class:`DataParallel` runs one Solver per
process of a :class:`gpunet.distributed.Communicator` (every rank builds the same Solver on
the same data):

- ``batch_size`` is per process (as PyTorch DDP and ChainerMN): one step consumes
  ``size * batch_size`` examples; the learning rate is not rescaled.
- Each epoch every rank draws the same seeded permutation ``perm``, drops its last
  ``N % size`` entries and takes ``perm[rank::size]``: every rank makes the same number of
  steps, and step ``i`` of the job covers the batch a single process with
  ``size * batch_size`` would take. Gradients and the loss are averaged over ranks in one
  ``allreduce_mean`` per step (BatchNorm normalises with each rank's own batch, so models
  with BatchNorm differ from one process).
- Rank 0's training state is broadcast when the Solver is built and when it loads a
  checkpoint (only rank 0 reads the file); ``model.rng`` is then re-seeded per rank from
  rank 0's state, and again at every epoch end, so dropout masks differ between ranks yet
  resume exactly.
- Accuracies and the validation loss are computed on each rank's share and summed over
  ranks; BatchNorm running statistics are averaged at every epoch end. Every decision (NaN
  guard, best epoch, patience, schedules) sees the same numbers on every rank.
- Only rank 0 (the root process) prints and writes files; a failure on one rank is raised
  on every rank (:meth:`DataParallel.agree`), so no rank waits alone in a collective.

Building the Solver, ``train``, ``load_checkpoint`` and ``check_accuracy`` are collective
with a communicator: every rank must call them.
"""

from __future__ import annotations

import hashlib
import warnings
from numbers import Integral

import numpy as np

from ..backend import to_numpy
from ..backend.ops import host_dtype
from ..checkpoint import to_json
from .device import is_array
from .state import buffers_of, rng_of

_COLLECTIVES = ("rank", "size", "allreduce_mean", "allreduce_sum", "bcast", "barrier")


def make_parallel(comm) -> SingleProcess:
    """The parallel object of a Solver's ``comm`` keyword (None: a single process)."""
    if comm is None:
        return SingleProcess()
    missing = [a for a in _COLLECTIVES if not hasattr(comm, a)]
    if missing:
        raise TypeError(f"comm must be a gpunet.distributed.Communicator (rank, size, "
                        f"allreduce_mean, allreduce_sum, bcast, barrier); "
                        f"{type(comm).__name__} has no {', '.join(missing)}")
    return DataParallel(comm)


class SingleProcess:
    """One process: the identity everywhere."""

    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        """Whether this process prints and writes files (rank 0)."""
        return self.rank == 0

    @property
    def world_size(self) -> int:
        """Number of processes (recorded in checkpoints)."""
        return self.size

    # --- sharing the data ---------------------------------------------------------------------
    def steps_per_epoch(self, num_train: int, batch_size: int, drop_last: bool) -> int:
        """Steps of an epoch on ``num_train`` examples (each process takes its share; a
        last batch of one example is merged into the one before)."""
        per_rank = num_train // self.size
        where = "" if self.size == 1 else f" per process ({self.size} processes)"
        if per_rank == 0:
            raise ValueError(f"{num_train} training examples cannot be shared by {self.size} "
                             "processes; use fewer processes or more data")
        if not drop_last:  # a last batch of one example joins the batch before it
            steps = -(-per_rank // batch_size)
            return steps - 1 if steps > 1 and per_rank % batch_size == 1 else steps
        if per_rank < batch_size:
            raise ValueError(
                f"drop_last=True with batch_size={batch_size} > {per_rank} training "
                f"examples{where} would leave no batch; lower batch_size or set drop_last=False"
            )
        return per_rank // batch_size

    def shard(self, perm: np.ndarray) -> np.ndarray:
        """This process's part of an epoch's permutation (the same length on every rank)."""
        if self.size == 1:
            return perm
        return perm[:len(perm) - len(perm) % self.size][self.rank::self.size]

    def samples(self, n: int) -> int:
        """Examples the whole job processes while this process processes ``n``."""
        return n * self.size

    def share(self, n: int) -> tuple[int, int]:
        """``(start, stop)``: this process's rows of ``n`` rows to evaluate."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    # --- reductions ---------------------------------------------------------------------------
    def reduce(self, names: list, grads: dict, loss):
        """``(grads, loss)`` averaged over the processes (unchanged for one)."""
        return grads, loss

    def total(self, host: np.ndarray) -> np.ndarray:
        """``host`` (float64 counts or sums) summed over the processes."""
        return host

    def average_buffers(self, model) -> None:
        """Average the model's floating buffers (BatchNorm running statistics)."""

    def reseed(self, model) -> None:
        """Give ``model.rng`` a stream of its own on every process but rank 0."""

    # --- agreeing -----------------------------------------------------------------------------
    def agree(self, error: BaseException | None, what: str) -> None:
        """Raise ``error`` if given (on every process, if one of them failed to ``what``)."""
        if error is not None:
            raise error

    def any_flag(self, flag: bool, agreed_point: bool) -> bool:
        """Whether ``flag`` (e.g. Ctrl-C was pressed) is set on any process. Several
        processes compare flags only at ``agreed_point`` steps (a collective that every
        process reaches together), else this is False."""
        return bool(flag)

    def on_root(self, fn, what: str) -> None:
        """Run ``fn()`` on rank 0 only (printing, writing); raise its failure everywhere."""
        fn()

    def from_root(self, load, export, apply, model, what: str) -> None:
        """Run ``load()`` (if not None) on rank 0, then give every other process rank 0's
        state: ``export() -> (arrays, info)`` there, ``apply(arrays, info, where)`` here."""
        if load is not None:
            load()

    # --- checkpoints ----------------------------------------------------------------------------
    def settings(self) -> dict:
        """What a checkpoint records about the processes (their number)."""
        return {"world_size": self.size}

    def check_settings(self, meta: dict, batch_size: int, where: str) -> None:
        """Warn if the checkpoint ``where`` (metadata ``meta``) was written by another number
        of processes."""
        saved = meta.get("world_size", 1)
        if saved != self.size:
            warnings.warn(f"{where} was written by {saved} process(es), this run has "
                          f"{self.size}: a step now takes {self.size} x batch_size="
                          f"{self.size * batch_size} examples instead of "
                          f"{saved * batch_size}", stacklevel=4)


class DataParallel(SingleProcess):
    """One of ``comm.size`` processes training together (see the module docstring)."""

    def __init__(self, comm):
        self.comm = comm
        rank, size = self.comm.rank, self.comm.size
        if not (isinstance(size, Integral) and isinstance(rank, Integral) and 0 <= rank < size):
            raise ValueError(f"comm.rank must be in [0, comm.size), got rank={rank!r}, "
                             f"size={size!r}")
        self.rank, self.size = int(rank), int(size)

    def reduce(self, names, grads, loss):
        """One ``allreduce_mean`` of every gradient and the loss (one packed buffer per
        dtype), with any communicator, even of one process."""
        arrays = [grads[k] for k in names]
        if not is_array(loss):  # a Python or NumPy scalar: a 0-d array of its dtype
            loss = np.asarray(loss, dtype=np.float64 if isinstance(loss, (int, float)) else None)
        *reduced, loss = self.comm.allreduce_mean(arrays + [loss])
        return dict(zip(names, reduced)), loss

    def total(self, host):
        if self.size == 1:
            return host
        (host,) = self.comm.allreduce_sum([np.array(host, dtype=np.float64)])
        return host

    def average_buffers(self, model):
        buffers = buffers_of(model) if self.size > 1 else None
        if not buffers:
            return
        names = [k for k, v in buffers.items()
                 if is_array(v) and np.dtype(host_dtype(v.dtype)).kind in "fc"]
        if names:
            reduced = self.comm.allreduce_mean([buffers[k] for k in names])
            model.set_buffers({**buffers, **dict(zip(names, reduced))})

    def reseed(self, model):
        """Rank r > 0 gets a stream derived from rank 0's state and r (all ranks call this
        together); a checkpoint, which holds rank 0's state, so restores every rank's."""
        rng = rng_of(model)
        if self.size == 1 or rng is None:
            return
        root_state = self._bcast_json(rng.bit_generator.state if self.is_root else None)
        if self.is_root:
            return
        digest = hashlib.sha256(to_json({"s": root_state}).encode()).digest()
        seq = np.random.SeedSequence(int.from_bytes(digest[:16], "little"),
                                     spawn_key=(self.rank,))
        rng.bit_generator.state = type(rng.bit_generator)(seq).state

    def agree(self, error, what):
        """With several processes, first tell every rank (one small allreduce, which also
        makes all ranks meet) so that all of them raise."""
        if self.size == 1:
            return super().agree(error, what)
        flags = np.zeros(self.size)
        flags[self.rank] = error is not None
        (flags,) = self.comm.allreduce_sum([flags])
        failed = np.flatnonzero(flags).tolist()
        if not failed:
            return
        # the first failing rank's message reaches every rank (rank 0 alone may print it)
        first = failed[0]
        text = self._bcast_json(f"{type(error).__name__}: {error}" if self.rank == first else None,
                                root=first)
        if error is not None:
            raise error
        raise RuntimeError(f"rank(s) {failed} failed to {what}: rank {first}: {text}")

    def any_flag(self, flag, agreed_point):
        if self.size == 1:
            return bool(flag)
        if not agreed_point:
            return False
        (flags,) = self.comm.allreduce_sum([np.array([float(bool(flag))])])
        return bool(flags[0])

    def on_root(self, fn, what):
        error = None
        if self.is_root:
            try:
                fn()
            except Exception as exc:
                error = exc
        self.agree(error, what)

    def from_root(self, load, export, apply, model, what):
        """Rank 0's state reaches every rank: its JSON part by ``bcast_json``, its arrays by
        one ``bcast`` of host buffers; a failure of rank 0 (in ``load``) or of another rank
        (in ``apply``) is raised on every rank. Then ``model.rng`` is re-seeded per rank."""
        if self.size == 1:
            return super().from_root(load, export, apply, model, what)
        error, payload = None, None
        if self.is_root:
            try:
                if load is not None:
                    load()
                arrays, info = export()
                host = {k: np.ascontiguousarray(to_numpy(v)) for k, v in arrays.items()}
                payload = {"info": info,
                           "arrays": [[k, list(a.shape), a.dtype.str] for k, a in host.items()]}
            except Exception as exc:
                error = exc
                payload = {"error": f"{type(exc).__name__}: {exc}"}
        payload = self._bcast_json(payload)
        if "error" in payload:
            if error is not None:
                raise error
            raise RuntimeError(f"rank 0 failed to {what}: {payload['error']}")
        if self.is_root:
            names, bufs = list(host), list(host.values())
        else:
            names = [k for k, _, _ in payload["arrays"]]
            bufs = [np.empty(shape, dtype=np.dtype(dt)) for _, shape, dt in payload["arrays"]]
        bufs = self.comm.bcast(bufs, root=0)
        failure = None
        if not self.is_root:
            try:
                apply(dict(zip(names, bufs)), payload["info"], "rank 0's state")
            except Exception as exc:
                failure = exc
        self.agree(failure, "take over rank 0's training state (build the same Solver and "
                            "model on every rank)")
        self.reseed(model)

    def check_settings(self, meta, batch_size, where):
        if self.is_root:
            super().check_settings(meta, batch_size, where)

    def _bcast_json(self, obj, root: int = 0):
        """Rank ``root``'s JSON data ``obj`` on every rank (see ``Communicator.bcast_json``)."""
        from ..distributed import Communicator

        return Communicator.bcast_json(self.comm, obj, root)
