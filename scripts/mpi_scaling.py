"""Data-parallel scaling on this machine: training samples/s of the Solver for

  1 process  x 1 BLAS thread                     (the baseline),
  N processes x 1 BLAS thread each, over MPI      (gpunet.distributed, N = --ranks),
  1 process  x N BLAS threads                     (what the same cores give without MPI),

all with the same *global* batch (per-process batch = global / processes), so every run
does the same arithmetic per step. Usage (Fashion-MNIST under /usr/share/datasets or
$GPUNET_DATA; --data digits needs no files):

    python scripts/mpi_scaling.py --data fashion-mnist --hidden 512 256 --batch 64 512

Each configuration runs in fresh processes, --repeats times, interleaved (so background
load hits all of them alike); the table shows the median and the spread. The timed part
is --epochs epochs of Solver.train after one warm-up epoch, including its small per-epoch
evaluation (500 training and 1000 validation samples); samples/s counts training samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worker(args) -> None:
    """One measurement (run by the driver, under mpiexec for --mpi); rank 0 prints JSON."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from gpunet import data, use_backend
    from gpunet.models import FullyConnectedNet
    from gpunet.solver import Solver

    use_backend("numpy")
    batch = args.batch[0]
    comm = None
    if args.mpi:
        from gpunet.distributed import get_comm

        comm = get_comm("mpi")
    size = comm.size if comm is not None else 1
    rank = comm.rank if comm is not None else 0
    if batch % size:
        raise SystemExit(f"global batch {batch} is not a multiple of {size} processes")
    ds = data.load_dataset(args.data, None, seed=0, flatten=True)
    model = FullyConnectedNet(args.hidden, input_dim=ds.num_features, num_classes=ds.num_classes,
                              weight_scale="he", dtype=np.float32, seed=0)
    solver = Solver(model, dict(X_train=ds.X_train, y_train=ds.y_train, X_val=ds.X_val[:1000],
                                y_val=ds.y_val[:1000]),
                    update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=batch // size, num_epochs=1, num_train_samples=500,
                    verbose=False, restore_best=False, seed=0, comm=comm)
    solver.train()  # warm-up: first touches, buffer allocation
    if comm is not None:
        comm.barrier()
    t0 = time.perf_counter()
    solver.num_epochs = 1 + args.epochs
    solver.train()
    if comm is not None:
        comm.barrier()
    seconds = time.perf_counter() - t0
    n = len(ds.y_train)
    per_epoch = n - n % size
    if rank == 0:
        print(json.dumps(dict(samples_per_s=args.epochs * per_epoch / seconds, seconds=seconds,
                              val_acc=solver.history["val_acc"][-1],
                              loss=float(np.mean(solver.history["loss"][-20:])))))


def measure(args, ranks: int, threads: int, batch: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mpi4py"] if ranks > 1 else [sys.executable]
    cmd += [__file__, "--worker", "--data", args.data, "--epochs", str(args.epochs),
            "--batch", str(batch), "--hidden", *map(str, args.hidden)]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks), *cmd, "--mpi"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "mnist", "digits"))
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 256])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 512], help="global batch sizes")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    n = args.ranks
    configs = [(1, 1), (n, 1), (1, n)]
    print(f"{args.data}, FullyConnectedNet {args.hidden}, float32, adam; {args.epochs} timed "
          f"epoch(s), median of {args.repeats}; cpu count {os.cpu_count()}")
    print(f"{'global batch':>12} {'processes x threads':>20} {'samples/s':>10} {'(min-max)':>17} "
          f"{'vs 1x1':>7} {'val acc':>8}")
    for batch in args.batch:
        runs = {c: [] for c in configs}
        for _ in range(args.repeats):
            for c in configs:
                runs[c].append(measure(args, c[0], c[1], batch))
        base = statistics.median(r["samples_per_s"] for r in runs[(1, 1)])
        for (ranks, threads), rs in runs.items():
            rates = [r["samples_per_s"] for r in rs]
            med = statistics.median(rates)
            print(f"{batch:>12} {f'{ranks} x {threads}':>20} {med:>10.0f} "
                  f"{f'({min(rates):.0f}-{max(rates):.0f})':>17} {med / base:>6.2f}x "
                  f"{statistics.median(r['val_acc'] for r in rs):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
