"""Data-parallel training jobs for tests/test_distributed.py, run under MPI:

    mpiexec -n 2 python -m mpi4py tests/mpi_scripts/train.py OUT_DIR JOB [JOB ...]

Each JOB trains a small float64 FullyConnectedNet on a slice of the digits data with a
gpunet MPI communicator and writes ``OUT_DIR/JOB.rank{r}.npz`` (parameters ``p/*``,
buffers ``b/*``) and ``OUT_DIR/JOB.rank{r}.json`` (history, counters, checkpoint writes).
The test imports this file for the same data, models and settings in its single-process
references.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

import gpunet
from gpunet import solver as solver_mod
from gpunet.data import load_digits
from gpunet.models import FullyConnectedNet
from gpunet.training import solver as writer  # the module that writes checkpoints

PER_RANK_BATCH = 16


def data(n_train=400, n_val=120):
    ds = load_digits(flatten=True)
    return dict(X_train=ds.X_train[:n_train].astype(np.float64), y_train=ds.y_train[:n_train],
                X_val=ds.X_val[:n_val].astype(np.float64), y_val=ds.y_val[:n_val])


def model(job, seed=0):
    """The model of a job: layernorm (per-sample, so 2 ranks == 1 process), batchnorm, or
    batchnorm with dropout."""
    kw = dict(input_dim=64, num_classes=10, dtype=np.float64, weight_scale="he", seed=seed)
    if job == "layernorm":
        return FullyConnectedNet([24, 24], normalization="layernorm", reg=1e-3, **kw)
    if job == "batchnorm":
        return FullyConnectedNet([24], normalization="batchnorm", **kw)
    return FullyConnectedNet([24, 24], normalization="batchnorm", dropout_keep_ratio=0.8,
                             reg=1e-3, **kw)


def settings(job, batch_size, out=None):
    """Solver keywords of a job (``out``: the directory for its checkpoints)."""
    base = dict(batch_size=batch_size, verbose=False, seed=7, num_train_samples=150)
    if job == "layernorm":
        return dict(base, update_rule="adam", optim_config={"learning_rate": 5e-3},
                    lr_decay=0.9, num_epochs=3)
    if job == "batchnorm":
        return dict(base, update_rule="sgd_momentum", optim_config={"learning_rate": 0.05},
                    num_epochs=2, restore_best=False)
    # dropout_*: checkpointed runs for the resume test
    kw = dict(base, update_rule="adamw", optim_config={"learning_rate": 5e-3}, lr_decay=0.8,
              num_epochs=4, restore_best=False, keep_every=1)
    if job == "dropout_straight":
        return dict(kw, checkpoint_name=str(out / "a"))
    if job == "dropout_short":
        return dict(kw, num_epochs=2, checkpoint_name=str(out / "s"))
    if job == "dropout_resume":
        return dict(kw, checkpoint_name=str(out / "r"), resume=out / "s_epoch_2.npz")
    raise ValueError(f"unknown job {job!r}")


class FailingNet(FullyConnectedNet):
    """Raises on rank 1 at its third training step."""

    def __init__(self, rank, **kw):
        super().__init__([8], input_dim=64, num_classes=10, dtype=np.float64, seed=0, **kw)
        self.rank, self.calls = rank, 0

    def loss(self, X, y=None):
        if y is not None:
            self.calls += 1
            if self.rank == 1 and self.calls == 3:
                raise RuntimeError("injected failure on rank 1")
        return super().loss(X, y)


class NaNNet(FullyConnectedNet):
    """Returns a NaN loss on rank 1 from its 5th training step on (rank 0's stay finite)."""

    def __init__(self, rank):
        super().__init__([8], input_dim=64, num_classes=10, dtype=np.float64, seed=0)
        self.rank, self.calls = rank, 0

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        self.calls += 1
        return (out[0] * np.nan, out[1]) if self.rank == 1 and self.calls >= 5 else out


def errors(out: Path, comm) -> dict:
    """Failures on one rank that every rank must see: ``{case: [error type, message]}``."""
    r, seen = comm.rank, {}
    small = data(n_train=64, n_val=20)

    def attempt(case, fn):
        try:
            fn()
            seen[case] = None
        except Exception as exc:
            seen[case] = [type(exc).__name__, str(exc)]

    real = writer.save_npz_atomic

    def failing(path, arrays, meta=None):
        if "epoch_2" in str(path):
            raise OSError("disk full (injected)")
        return real(path, arrays, meta)

    writer.save_npz_atomic = failing
    try:
        s = solver_mod.Solver(model("layernorm"), small, comm=comm,
                              **dict(settings("layernorm", 16), checkpoint_name=str(out / "e"),
                                     keep_every=1))
        attempt("write", s.train)
        seen["write_epoch"] = s.epoch
    finally:
        writer.save_npz_atomic = real
    attempt("missing", lambda: solver_mod.Solver(model("layernorm"), small, comm=comm,
                                                 resume=out / "missing.npz",
                                                 **settings("layernorm", 16)))
    attempt("mismatch", lambda: solver_mod.Solver(model("layernorm"), small, comm=comm,
                                                  **settings("layernorm", 16 if r == 0 else 8)))
    s = solver_mod.Solver(NaNNet(r), small, comm=comm, **dict(settings("layernorm", 4),
                                                              print_every=3))
    attempt("nan", s.train)
    seen["nan_at"] = [s.iteration, len(s.history["loss"])]
    return seen


def run(out: Path, job: str, comm) -> None:
    r = comm.rank
    if job == "fail":
        solver_mod.Solver(FailingNet(r), data(), comm=comm, **settings("layernorm", 8)).train()
        return
    if job == "errors":
        (out / f"errors.rank{r}.json").write_text(json.dumps(errors(out, comm)))
        return
    writes = []
    real = writer.save_npz_atomic

    def counting(path, arrays, meta=None):
        writes.append(Path(path).name)
        return real(path, arrays, meta)

    writer.save_npz_atomic = counting
    try:
        # A different initialisation on every rank: rank 0's must reach them all.
        m = model(job, seed=100 + r)
        s = solver_mod.Solver(m, data(), comm=comm, **settings(job, PER_RANK_BATCH, out))
        s.train()
    finally:
        writer.save_npz_atomic = real
    arrays = {f"p/{k}": gpunet.to_numpy(v) for k, v in m.params.items()}
    arrays.update({f"b/{k}": gpunet.to_numpy(v) for k, v in m.get_buffers().items()})
    np.savez(out / f"{job}.rank{r}.npz", **arrays)
    info = dict(history=s.history, epoch=s.epoch, iteration=s.iteration,
                iterations_per_epoch=s.iterations_per_epoch, best_epoch=s.best_epoch,
                writes=writes, rng=repr(m.rng.bit_generator.state),
                t=[c.get("t") for c in s.optim_configs.values()])
    (out / f"{job}.rank{r}.json").write_text(json.dumps(info))


def main(argv):
    """``OUT_DIR JOB...``; ``GPUNET_TEST_COMM`` (default "mpi") picks the communicator and
    ``GPUNET_BACKEND`` the backend (cupy: one GPU per process on each machine)."""
    from gpunet.distributed import get_comm, use_local_device

    out = Path(argv[0])
    kind = os.environ.get("GPUNET_TEST_COMM", "mpi")
    comm = get_comm(kind, cuda_aware=os.environ.get("GPUNET_TEST_CUDA_AWARE") == "1")
    if gpunet.get_backend() == "cupy" and kind == "mpi":
        use_local_device(comm)
    for job in argv[1:]:
        run(out, job, comm)


if __name__ == "__main__":
    main(sys.argv[1:])
