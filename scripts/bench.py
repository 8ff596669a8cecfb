#!/usr/bin/env python
"""gpunet against PyTorch, side by side: samples/s of one training step
(forward + backward + SGD update) on the same models, shapes, dtype and thread count.

Every case runs in a fresh process per framework (two BLAS thread pools in one process
disturb each other, and a process's allocation history changes its page faults), the two
processes alternate in order from case to case and round to round, each case is warmed
up first, and the table reports medians over the rounds: samples/s of each framework,
the step time, the ratio gpunet/PyTorch per round and its median, and the share of
gpunet's step spent in GEMM (np.matmul / np.dot). The CPU time other processes used
during each round is reported (it disturbs the timings). The peak memory (ru_maxrss) of
the 3-conv net at batch 256 is measured in processes of its own.

    python scripts/bench.py                    # the full table (about 10 minutes on 2 cores)
    python scripts/bench.py --quick            # a smoke run: two cases, one short round
    python scripts/bench.py --profile cnn      # time per layer of one case (and PyTorch's ops)
    python scripts/bench.py --numba-ab --cases cnn --dtypes float32   # NumPy path vs numba kernels
    python scripts/bench.py --e2e              # one `gpunet train` epoch on Fashion-MNIST vs a PyTorch loop
    python scripts/bench.py --json out.json    # also write the table as JSON
    python scripts/bench.py --malloc keep      # both frameworks with glibc keeping freed memory
    python scripts/bench.py --backend cupy     # CuPy against PyTorch CUDA

PyTorch is optional (``pip install -e ".[bench]"`` in the clone); without it only gpunet is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gpunet._install import clone_install  # (import gpunet loads NumPy only: no CuPy, no numba)

ROOT = Path(__file__).resolve().parent.parent


# --- the cases ----------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "mlp" | "cnn" | "conv3"
    batch: int
    dims: tuple = ()
    label: str = ""


CASES = {c.name: c for c in [
    Case("mlp3072", "mlp", 200, (3072, 100, 10), "MLP 3072-100-10"),
    Case("mlp784-b1", "mlp", 1, (784, 500, 200, 10), "MLP 784-500-200-10"),
    Case("mlp784-b8", "mlp", 8, (784, 500, 200, 10), "MLP 784-500-200-10"),
    Case("mlp784-b32", "mlp", 32, (784, 500, 200, 10), "MLP 784-500-200-10"),
    Case("mlp784-b256", "mlp", 256, (784, 500, 200, 10), "MLP 784-500-200-10"),
    Case("mlp784-b512", "mlp", 512, (784, 500, 200, 10), "MLP 784-500-200-10"),
    Case("cnn", "cnn", 64, (), "ThreeLayerConvNet (conv32 7x7)"),
    Case("cnn-seq", "cnn-seq", 64, (), "  the same, nn.Sequential"),
    Case("conv3", "conv3", 64, (), "3-conv net (32-32-64 3x3)"),
    Case("conv3-seq", "conv3-seq", 64, (), "  the same, nn.Sequential"),
]}
MEMORY_CASE = Case("conv3-b256", "conv3-seq", 256, (), "3-conv net (32-32-64 3x3), nn.Sequential")
QUICK_CASES = ["mlp784-b32", "cnn"]
LEARNING_RATE = 1e-3


# --- gpunet side ------------------------------------------------------------------------
def conv3_model(dtype: str):
    """The 3-conv net as CS231n code writes a model: the sandwich layers of gpunet.layers
    called by hand (conv-relu, conv-relu-pool twice, affine-relu, affine, softmax)."""
    import numpy as np

    from gpunet import layers as L
    from gpunet.losses import softmax_loss
    from gpunet.models.base import Model

    class Conv3Net(Model):
        def __init__(self):
            super().__init__(0.0, dtype, 0)
            shapes = {"W1": (32, 3, 3, 3), "W2": (32, 32, 3, 3), "W3": (64, 32, 3, 3), "W4": (64 * 8 * 8, 256),
                      "W5": (256, 10)}
            params = {}
            for i, (name, shape) in enumerate(shapes.items(), start=1):
                fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
                params[name] = self._weight(shape, "he", fan_in, shape[0])
                params[f"b{i}"] = self._new(np.zeros(shape[0] if len(shape) == 4 else shape[1]))
            self.params = params  # the whole table at once, as the models do
            self.conv, self.pool = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}

        def loss(self, X, y=None):
            p, conv, pool = self.params, self.conv, self.pool
            a1, c1 = L.conv_relu_forward(X, p["W1"], p["b1"], conv)
            a2, c2 = L.conv_relu_pool_forward(a1, p["W2"], p["b2"], conv, pool)
            a3, c3 = L.conv_relu_pool_forward(a2, p["W3"], p["b3"], conv, pool)
            a4, c4 = L.affine_relu_forward(a3, p["W4"], p["b4"])
            scores, c5 = L.affine_forward(a4, p["W5"], p["b5"])
            if y is None:
                return scores
            loss, d = softmax_loss(scores, y)
            g = {}
            d, g["W5"], g["b5"] = L.affine_backward(d, c5)
            d, g["W4"], g["b4"] = L.affine_relu_backward(d, c4)
            d, g["W3"], g["b3"] = L.conv_relu_pool_backward(d, c3)
            d, g["W2"], g["b2"] = L.conv_relu_pool_backward(d, c2)
            _, g["W1"], g["b1"] = L.conv_relu_backward(d, c1, compute_dx=False)
            return loss, g

    return Conv3Net()


def gpunet_step_fn(case: Case, dtype: str, backend: str):
    """(step, sync, model): one gpunet training step of ``case`` (the model's loss, then
    gpunet.optim.sgd on every parameter, as the Solver does) and a device sync."""
    import numpy as np

    import gpunet
    from gpunet import models, nn, optim
    from gpunet.backend.host_memory import keep_freed_memory

    gpunet.use_backend(backend)
    keep_freed_memory()  # as Solver.train() does
    rng = np.random.default_rng(0)
    if case.model == "mlp":
        if len(case.dims) == 3:
            model = models.TwoLayerNet(case.dims[0], case.dims[1], case.dims[2], weight_scale="he",
                                       dtype=dtype, seed=0)
        else:
            model = models.FullyConnectedNet(list(case.dims[1:-1]), input_dim=case.dims[0],
                                             num_classes=case.dims[-1], weight_scale="he", dtype=dtype, seed=0)
        shape = (case.batch, case.dims[0])
    elif case.model == "cnn":
        model = models.ThreeLayerConvNet(weight_scale="he", dtype=dtype, seed=0)
        shape = (case.batch, 3, 32, 32)
    elif case.model == "cnn-seq":
        net = nn.Sequential(
            nn.Conv2d(3, 32, 7, pad=3, dtype=dtype, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 16 * 16, 100, dtype=dtype, rng=1), nn.ReLU(), nn.Linear(100, 10, dtype=dtype, rng=2))
        model = nn.Classifier(net, seed=0)
        shape = (case.batch, 3, 32, 32)
    elif case.model == "conv3":
        model = conv3_model(dtype)
        shape = (case.batch, 3, 32, 32)
    elif case.model == "conv3-seq":
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, pad=1, dtype=dtype, rng=0), nn.ReLU(),
            nn.Conv2d(32, 32, 3, pad=1, dtype=dtype, rng=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, pad=1, dtype=dtype, rng=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 256, dtype=dtype, rng=3), nn.ReLU(),
            nn.Linear(256, 10, dtype=dtype, rng=4),
        )
        model = nn.Classifier(net, seed=0)
        shape = (case.batch, 3, 32, 32)
    else:
        raise ValueError(case.model)
    X = gpunet.asarray(rng.standard_normal(shape), dtype=dtype)
    y = gpunet.asarray(rng.integers(0, 10, case.batch))
    configs = {k: {"learning_rate": LEARNING_RATE} for k in model.params}
    params = model.params

    def step():
        loss, grads = model.loss(X, y)
        for k, g in grads.items():
            optim.sgd(params[k], g, configs[k])
        return loss

    if backend == "cupy":
        import cupy

        def sync():
            cupy.cuda.Device().synchronize()
    else:
        def sync():
            pass
    return step, sync, model


# --- PyTorch side ------------------------------------------------------------------------
def torch_step_fn(case: Case, dtype: str, backend: str):
    """(step, sync, model): the same step in PyTorch (nn.Module, cross-entropy, optim.SGD)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = "cuda" if backend == "cupy" else "cpu"
    tdtype = getattr(torch, dtype)
    if case.model == "mlp":
        layers = []
        for i, (a, b) in enumerate(zip(case.dims[:-1], case.dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(case.dims) - 2:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        shape = (case.batch, case.dims[0])
    elif case.model in ("cnn", "cnn-seq"):  # PyTorch writes both the same way
        model = nn.Sequential(nn.Conv2d(3, 32, 7, padding=3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(32 * 16 * 16, 100), nn.ReLU(), nn.Linear(100, 10))
        shape = (case.batch, 3, 32, 32)
    elif case.model in ("conv3", "conv3-seq"):
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
        shape = (case.batch, 3, 32, 32)
    else:
        raise ValueError(case.model)
    model = model.to(device=device, dtype=tdtype)
    X = torch.randn(shape, dtype=tdtype, device=device)
    y = torch.randint(0, 10, (case.batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        return loss

    if device == "cuda":
        def sync():
            torch.cuda.synchronize()
    else:
        def sync():
            pass
    return step, sync, model


STEP_FNS = {"gpunet": gpunet_step_fn, "torch": torch_step_fn}


# --- end to end: one epoch of `gpunet train` on Fashion-MNIST against a plain PyTorch loop -----
#: ``gpunet train`` options of each end-to-end model (float32, Adam 1e-3 as its defaults);
#: the PyTorch loop builds the same network.
E2E_MODELS = {
    "mlp": ("MLP 784-256-128-10", ["--model", "mlp", "--hidden", "256", "128"]),
    "cnn": ("ThreeLayerConvNet (32 5x5, 128)", ["--model", "cnn", "--hidden", "128", "--filters", "32",
                                                "--filter-size", "5"]),
}
E2E_BATCH = 64
E2E_EVAL_TRAIN = 2000  # training samples the Solver's per-epoch accuracy check draws (gpunet train's setting)


def e2e_gpunet(model: str) -> dict:
    """Seconds of ``gpunet train --epochs 1`` (run in this process) without loading the
    data: building the model, one epoch, the Solver's train/val accuracy and the test accuracy."""
    import contextlib
    import io

    from gpunet import data
    from gpunet.cli import main as gpunet_main

    argv = ["train", "--data", "fashion-mnist", *E2E_MODELS[model][1], "--epochs", "1", "--batch-size",
            str(E2E_BATCH), "--seed", "0", "--backend", "numpy", "--dtype", "float32"]
    loading = [0.0]
    out = io.StringIO()
    with _Timed(data, "load_dataset", loading), contextlib.redirect_stdout(out):
        t0 = time.perf_counter()
        gpunet_main(argv)
        total = time.perf_counter() - t0
    accuracy = float(out.getvalue().rsplit("test accuracy:", 1)[1].split()[0])
    return {"seconds": total - loading[0], "accuracy": accuracy, "command": "gpunet " + " ".join(argv)}


def e2e_torch(model: str) -> dict:
    """The same epoch as a plain PyTorch loop over the same arrays (gpunet's loader and
    split), batch size, optimizer and evaluation; seconds without loading the data."""
    import numpy as np
    import torch
    from torch import nn

    from gpunet import data

    ds = data.load_dataset("fashion-mnist", seed=0, flatten=model != "cnn")
    t0 = time.perf_counter()
    torch.manual_seed(0)
    if model == "mlp":
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(32 * 14 * 14, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    X, y = ds.X_train, ds.y_train
    net.train()
    order = rng.permutation(len(y))
    for start in range(0, len(y), E2E_BATCH):  # the last batch may be short, as in the Solver's epoch
        idx = order[start : start + E2E_BATCH]
        xb, yb = torch.from_numpy(X[idx]), torch.from_numpy(y[idx].astype(np.int64))
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xb), yb).backward()
        opt.step()

    def accuracy(Xs, ys):
        net.eval()
        hits = 0
        with torch.no_grad():
            for s in range(0, len(ys), 100):
                hits += int((net(torch.from_numpy(Xs[s : s + 100])).argmax(1).numpy() == ys[s : s + 100]).sum())
        return hits / len(ys)

    sub = rng.choice(len(y), E2E_EVAL_TRAIN, replace=False)
    accuracy(X[sub], y[sub])
    accuracy(ds.X_val, ds.y_val)
    test = accuracy(ds.X_test, ds.y_test)
    return {"seconds": time.perf_counter() - t0, "accuracy": test, "train_samples": len(y),
            "val_samples": len(ds.y_val), "test_samples": len(ds.y_test)}


E2E_FNS = {"gpunet": e2e_gpunet, "torch": e2e_torch}


# --- timing (inside a worker) -------------------------------------------------------------
def time_step(step, sync, warmup: float, min_time: float, blocks: int = 3) -> tuple[float, int, float]:
    """(seconds per step, steps timed, page faults per step). Seconds: the median over
    ``blocks`` timed blocks of ``min_time / blocks`` seconds each (at least 2 steps per
    block), after ``warmup`` seconds of steps. Page faults (minor, Linux): fresh memory
    that the allocator had given back to the system and touches again."""
    import resource

    t0, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < warmup:
        step()
        n += 1
    sync()
    estimate = (time.perf_counter() - t0) / n
    per_block = max(2, int(min_time / blocks / max(estimate, 1e-7)) + 1)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per_block):
            step()
        sync()
        times.append((time.perf_counter() - t0) / per_block)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(times), per_block * blocks, faults / (per_block * blocks)


class _Timed:
    """Replaces ``owner.attr`` with a timing wrapper that adds to ``spent[0]``."""

    def __init__(self, owner, attr, spent):
        self.owner, self.attr, self.spent = owner, attr, spent
        self.orig = getattr(owner, attr)

    def __enter__(self):
        orig, spent, clock = self.orig, self.spent, time.perf_counter

        def timed(*args, **kwargs):
            t = clock()
            try:
                return orig(*args, **kwargs)
            finally:
                spent[0] += clock() - t

        setattr(self.owner, self.attr, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.attr, self.orig)


def gemm_share(step, steps: int) -> float:
    """Share of a NumPy step's wall time spent inside np.matmul / np.dot."""
    import numpy as np

    spent = [0.0]
    with _Timed(np, "matmul", spent), _Timed(np, "dot", spent):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - t0
    return spent[0] / total


def rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: ru_maxrss in KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def set_threads(framework: str, threads: int) -> dict:
    """Fix the thread counts of this worker and describe the math libraries in use."""
    info = {"framework": framework, "threads": threads}
    if framework == "gpunet":
        import numpy as np

        from gpunet.backend import threads as pool

        info["numpy"] = np.__version__
        info["pool"] = pool.get_threads()
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            from gpunet.backend.info import blas_summary

            info["blas"] = f"BLAS {blas_summary()} (threads set by environment only: {clone_install('bench')})"
        else:
            threadpool_limits(threads)
            pools = [p for p in threadpool_info() if p.get("user_api") == "blas"] or threadpool_info()
            info["blas"] = "; ".join(
                f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                f"{p.get('threading_layer')}, {p.get('num_threads')} threads)" for p in pools)
    else:
        import torch

        torch.set_num_threads(threads)
        info["torch"] = torch.__version__
        info["blas"] = (f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
                        f"mkldnn={torch.backends.mkldnn.is_available()}, mkl={torch.backends.mkl.is_available()}")
    return info


def worker(args) -> None:
    """Time ``args.cases`` x ``args.dtypes`` for one framework; one JSON object per line."""
    info = set_threads(args.worker, args.threads)
    print(json.dumps({"info": info}), flush=True)
    if args.e2e_model:
        rec = E2E_FNS[args.worker](args.e2e_model)
        print(json.dumps({"e2e": args.e2e_model, "framework": args.worker, **rec}), flush=True)
        return
    make = STEP_FNS[args.worker]
    if args.memory:
        case = MEMORY_CASE
        base = rss_mib()
        step, sync, _ = make(case, args.dtypes[0], args.backend)
        for _ in range(3):
            step()
        sync()
        peak = rss_mib()
        print(json.dumps({"memory": {"case": case.name, "dtype": args.dtypes[0], "peak_mib": peak,
                                     "baseline_mib": base, "delta_mib": peak - base}}), flush=True)
        return
    for name in args.cases:
        case = CASES[name]
        for dtype in args.dtypes:
            step, sync, _ = make(case, dtype, args.backend)
            seconds, n, faults = time_step(step, sync, args.warmup, args.min_time)
            row = {"case": name, "dtype": dtype, "batch": case.batch, "framework": args.worker,
                   "step_ms": seconds * 1e3, "samples_per_s": case.batch / seconds, "steps": n,
                   "faults_per_step": faults}
            if args.worker == "gpunet" and args.backend == "numpy":
                row["gemm_share"] = gemm_share(step, max(2, min(n, int(0.3 / seconds) + 1)))
            print(json.dumps(row), flush=True)


# --- the driver ---------------------------------------------------------------------------
#: glibc malloc settings of ``--malloc keep`` (both frameworks): keep freed memory for
#: reuse instead of returning it to the system (and faulting it in again) every step.
MALLOC_KEEP = {"MALLOC_TRIM_THRESHOLD_": str(2**34), "MALLOC_MMAP_THRESHOLD_": str(2**30)}


def run_worker(framework: str, args, cases: list[str], extra: list[str]) -> list[dict]:
    """Run one worker process (a fresh process per framework and case) and parse its lines."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    if args.malloc == "keep":
        env.update(MALLOC_KEEP)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework,
           "--backend", args.backend, "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--min-time", str(args.min_time),
           "--dtypes", ",".join(args.dtypes), "--cases", ",".join(cases), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{framework} worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy so far (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / hz


def children_cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def fmt_rate(x):
    return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def fmt(value, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" for None."""
    return "-" if value is None else format(value, spec)


def drive_e2e(args, frameworks: list[str]) -> None:
    """``--e2e``: seconds of one training epoch with evaluation per model, framework and round."""
    results: dict[str, dict[str, list]] = {m: {} for m in E2E_MODELS}
    infos = {}
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for i, model in enumerate(E2E_MODELS):
            for fw in (frameworks if (r + i) % 2 == 0 else frameworks[::-1]):
                for rec in run_worker(fw, args, [], ["--e2e-model", model]):
                    if "info" in rec:
                        infos[fw] = rec["info"]
                    else:
                        results[model].setdefault(fw, []).append(rec)
        print(f"round {r + 1}/{args.rounds} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    for fw in frameworks:
        info = infos.get(fw, {})
        pool = f"; gpunet thread pool: {info['pool']}" if "pool" in info else ""
        print(f"{fw:7s} {info.get('blas', '')}; threads={args.threads}{pool}")
    sizes = next((rec for per_fw in results.values() for rec in per_fw.get("torch", [])), {})
    counts = ("{train_samples:,} training, {val_samples:,} validation, {test_samples:,} test samples".format(**sizes)
              if sizes else "")
    print(f"Fashion-MNIST ({counts}): one epoch of Adam 1e-3, batch {E2E_BATCH}, float32, plus the accuracy on "
          f"{E2E_EVAL_TRAIN} training samples, the validation and the test set; seconds without loading the data; "
          f"medians of {args.rounds} alternating rounds, one process per framework and model")
    print(f"gpunet: {results['mlp'].get('gpunet', [{}])[0].get('command', '')} (and --model cnn ...)\n")
    header = f"{'model':<34} {'gpunet s':>9} {'torch s':>9} {'ratio t/g':>9} {'acc g/t':>12}  per-round seconds g | t"
    print(header)
    print("-" * len(header))
    rows = []
    for model, per_fw in results.items():
        g = [rec["seconds"] for rec in per_fw.get("gpunet", [])]
        t = [rec["seconds"] for rec in per_fw.get("torch", [])]
        acc = [statistics.median(rec["accuracy"] for rec in per_fw[fw]) if per_fw.get(fw) else None
               for fw in ("gpunet", "torch")]
        row = {"model": model, "label": E2E_MODELS[model][0], "gpunet_s": statistics.median(g) if g else None,
               "torch_s": statistics.median(t) if t else None, "gpunet_rounds": g, "torch_rounds": t,
               "gpunet_accuracy": acc[0], "torch_accuracy": acc[1]}
        row["ratio"] = row["torch_s"] / row["gpunet_s"] if g and t else None
        rows.append(row)
        print(f"{row['label']:<34} {fmt(row['gpunet_s'], '9.2f')} {fmt(row['torch_s'], '9.2f')} "
              f"{fmt(row['ratio'], '9.2f')} {fmt(acc[0], '.4f'):>6}/{fmt(acc[1], '.4f'):<6}  "
              + " ".join(f"{v:.1f}" for v in g) + " | " + " ".join(f"{v:.1f}" for v in t))
    print("ratio t/g: PyTorch's seconds / gpunet's (> 1: gpunet is faster)")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                                               "threads": args.threads, "rounds": args.rounds, "info": infos,
                                               "e2e": rows}, indent=2))
        print(f"\nwrote {args.json}")


def drive(args) -> None:
    frameworks = [f for f in args.frameworks if f != "torch" or torch_available()]
    if args.e2e:
        drive_e2e(args, frameworks)
        return
    if "torch" in args.frameworks and "torch" not in frameworks:
        print(f"PyTorch is not installed ({clone_install('bench')}): timing gpunet only\n")
    results: dict[tuple, dict[str, list]] = {(c, d): {} for c in args.cases for d in args.dtypes}
    infos = {}
    foreign = []  # CPU seconds other processes used during each round: they disturb the timings
    for r in range(args.rounds):
        t0, busy0, own0 = time.perf_counter(), busy_cpu_seconds(), children_cpu_seconds()
        for i, case in enumerate(args.cases):  # a fresh process per framework and case
            for fw in (frameworks if (r + i) % 2 == 0 else frameworks[::-1]):
                for rec in run_worker(fw, args, [case], []):
                    if "info" in rec:
                        infos[fw] = rec["info"]
                    else:
                        results[(rec["case"], rec["dtype"])].setdefault(fw, []).append(rec)
        wall, busy1 = time.perf_counter() - t0, busy_cpu_seconds()
        other = None if busy0 is None else max(0.0, (busy1 - busy0) - (children_cpu_seconds() - own0))
        foreign.append(None if other is None else other / wall)
        load = "" if other is None else f"; other processes kept {other / wall:.2f} CPUs busy"
        print(f"round {r + 1}/{args.rounds} done in {wall:.0f} s{load}", flush=True)
    memory = {}
    if args.memory:
        for fw in frameworks:
            for rec in run_worker(fw, args, [], ["--memory"]):
                if "memory" in rec:
                    memory[fw] = rec["memory"]

    print()
    for fw in frameworks:
        info = infos.get(fw, {})
        pool = f"; gpunet thread pool: {info['pool']}" if "pool" in info else ""
        print(f"{fw:7s} {info.get('blas', '')}; threads={args.threads}{pool}")
    print(f"backend={args.backend}; malloc={args.malloc}; {args.rounds} rounds, one process per framework "
          f"and case, their order alternating; medians; warm-up {args.warmup} s, >= {args.min_time} s timed")
    if any(f is not None and f > 0.1 for f in foreign):
        print("note: other processes were busy during rounds "
              + ", ".join(f"{i + 1} ({f:.2f} CPUs)" for i, f in enumerate(foreign) if f is not None and f > 0.1)
              + "; their ratios are less reliable")
    print()
    header = (f"{'case':<13} {'model':<31} {'dtype':<7} {'batch':>5} {'gpunet/s':>10} {'torch/s':>10} "
              f"{'ratio':>6} {'GEMM':>5} {'step ms g/t':>13} {'faults g/t':>11}  per-round ratios")
    print(header)
    print("-" * len(header))
    rows = []
    for (name, dtype), per_fw in results.items():
        case = CASES[name]
        g = [rec["samples_per_s"] for rec in per_fw.get("gpunet", [])]
        t = [rec["samples_per_s"] for rec in per_fw.get("torch", [])]
        ratios = [a / b for a, b in zip(g, t, strict=False)]
        shares = [rec["gemm_share"] for rec in per_fw.get("gpunet", []) if "gemm_share" in rec]
        row = {"case": name, "model": case.label, "dtype": dtype, "batch": case.batch,
               "gpunet_samples_per_s": statistics.median(g) if g else None,
               "torch_samples_per_s": statistics.median(t) if t else None,
               "ratio": statistics.median(ratios) if ratios else None,
               "round_ratios": ratios, "gemm_share": statistics.median(shares) if shares else None,
               "gpunet_step_ms": statistics.median(rec["step_ms"] for rec in per_fw["gpunet"]) if g else None,
               "torch_step_ms": statistics.median(rec["step_ms"] for rec in per_fw["torch"]) if t else None,
               "gpunet_faults_per_step": [round(rec["faults_per_step"]) for rec in per_fw.get("gpunet", [])],
               "torch_faults_per_step": [round(rec["faults_per_step"]) for rec in per_fw.get("torch", [])]}
        rows.append(row)
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        share = "-" if row["gemm_share"] is None else f"{100 * row['gemm_share']:.0f}%"
        steps = "/".join("-" if v is None else f"{v:.3g}" for v in (row["gpunet_step_ms"], row["torch_step_ms"]))
        faults = "/".join(f"{statistics.median(v):.0f}" if v else "-"
                          for v in (row["gpunet_faults_per_step"], row["torch_faults_per_step"]))
        print(f"{name:<13} {case.label:<31} {dtype:<7} {case.batch:>5} {fmt_rate(row['gpunet_samples_per_s']):>10} "
              f"{fmt_rate(row['torch_samples_per_s']):>10} {ratio:>6} {share:>5} {steps:>13} {faults:>11}  "
              + " ".join(f"{x:.2f}" for x in ratios))
    print("faults: minor page faults per step (median over rounds): fresh memory the allocator had given back")
    print("GEMM: share of gpunet's step spent in np.matmul/np.dot = the fraction of its GEMM-bound limit "
          "(the samples/s if everything but the GEMMs took no time)")
    if memory:
        print(f"\npeak memory, {MEMORY_CASE.label} at batch {MEMORY_CASE.batch} ({args.dtypes[0]}, "
              "ru_maxrss of a process of its own; delta = peak - RSS after import):")
        for fw, m in memory.items():
            print(f"  {fw:7s} peak {m['peak_mib']:7.0f} MiB   delta {m['delta_mib']:7.0f} MiB")
    if args.json:
        out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "backend": args.backend,
               "threads": args.threads, "malloc": args.malloc, "rounds": args.rounds,
               "foreign_cpus_per_round": foreign, "info": infos, "rows": rows, "memory": memory}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")


# --- profile ----------------------------------------------------------------------------
class TreeProfiler:
    """Wall time per call path: wraps functions so that nested calls form a tree.

    Each node keeps its inclusive time, its self time (inclusive minus timed children)
    and its call count. Only host wall time is measured (no device syncs are added).
    """

    def __init__(self):
        self.nodes: dict[tuple, list] = {}  # path -> [calls, inclusive, self]
        self.stack: list[list] = []  # [path, start, child_time]
        self.patches: list[tuple] = []

    def wrap(self, owner, attr, label=None):
        """Time ``owner.attr`` (or ``owner[attr]`` for a dict) under ``label``."""
        orig = owner[attr] if isinstance(owner, dict) else getattr(owner, attr)
        label = label or attr
        prof, clock = self, time.perf_counter

        def timed(*args, **kwargs):
            parent = prof.stack[-1][0] if prof.stack else ()
            frame = [parent + (label,), clock(), 0.0]
            prof.nodes.setdefault(frame[0], [0, 0.0, 0.0])  # first entry fixes the print order
            prof.stack.append(frame)
            try:
                return orig(*args, **kwargs)
            finally:
                elapsed = clock() - frame[1]
                prof.stack.pop()
                node = prof.nodes[frame[0]]
                node[0] += 1
                node[1] += elapsed
                node[2] += elapsed - frame[2]
                if prof.stack:
                    prof.stack[-1][2] += elapsed

        own = isinstance(owner, dict) or attr in vars(owner)  # else a method found on the class
        self._set(owner, attr, timed)
        self.patches.append((owner, attr, orig, own))

    @staticmethod
    def _set(owner, attr, value):
        if isinstance(owner, dict):
            owner[attr] = value
        else:
            setattr(owner, attr, value)

    def unwrap(self):
        for owner, attr, orig, own in reversed(self.patches):
            if own:
                self._set(owner, attr, orig)
            else:
                delattr(owner, attr)
        self.patches.clear()

    def report(self, steps: int, step_s: float) -> str:
        lines = [f"{'call path':<52} {'calls':>6} {'incl ms':>8} {'self ms':>8} {'self %':>7}"]
        total = step_s * steps
        for path, (calls, incl, own) in self.nodes.items():
            name = "  " * (len(path) - 1) + path[-1]
            lines.append(f"{name:<52} {calls / steps:6.0f} {1e3 * incl / steps:8.2f} {1e3 * own / steps:8.2f} "
                         f"{100 * own / total:6.1f}%")
        timed = sum(n[2] for n in self.nodes.values())
        lines.append(f"{'(untimed: model/loop glue)':<52} {'':>6} {'':>8} {1e3 * (total - timed) / steps:8.2f} "
                     f"{100 * (total - timed) / total:6.1f}%")
        return "\n".join(lines)


LAYER_FUNCTIONS = [
    "affine_forward", "affine_backward", "affine_relu_forward", "affine_relu_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "conv_forward", "conv_backward", "conv_relu_forward", "conv_relu_backward",
    "conv_relu_pool_forward", "conv_relu_pool_backward",
    "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
    "batchnorm_forward", "batchnorm_backward_alt", "dropout_forward", "dropout_backward",
]


def _gemm_flops(a, b) -> int:
    """2*M*N*K (times the batch) of np.matmul / np.dot of a (..., M, K) and b (..., K, N)."""
    import math

    if getattr(a, "ndim", 0) < 1 or getattr(b, "ndim", 0) < 1:
        return 0
    m = a.shape[-2] if a.ndim >= 2 else 1
    n = b.shape[-1] if b.ndim >= 2 else 1
    batch = math.prod(a.shape[:-2]) if a.ndim > 2 else 1
    return 2 * m * n * a.shape[-1] * max(batch, math.prod(b.shape[:-2]) if b.ndim > 2 else 1)


def profile(args, torch_step_ms=None) -> None:
    """Per-layer (call-tree) wall time of one gpunet training step of ``args.profile``, and
    how far the step is from PyTorch's (``torch_step_ms``) with its GEMMs as they are."""
    import numpy as np

    import gpunet
    import gpunet.layers as L
    import gpunet.layers.sandwich as S
    from gpunet import models, nn, optim
    from gpunet.backend import get_ops

    info = set_threads("gpunet", args.threads)
    case = CASES.get(args.profile) or (MEMORY_CASE if args.profile == MEMORY_CASE.name else None)
    if case is None:
        raise SystemExit(f"unknown case {args.profile!r}; choose from {sorted(CASES)} or {MEMORY_CASE.name}")
    dtype = args.dtypes[0]
    step, sync, model = gpunet_step_fn(case, dtype, args.backend)
    step_s, _, faults = time_step(step, sync, args.warmup, args.min_time)

    prof = TreeProfiler()
    for mod in (L, S):  # the package namespace (models, nn) and the sandwiches' own imports
        for name in LAYER_FUNCTIONS:
            if hasattr(mod, name):
                prof.wrap(mod, name)
    for mod in (models.cnn, models.fc):
        prof.wrap(mod, "softmax_loss")
    for name, fn in nn.classifier.LOSSES.items():
        prof.wrap(nn.classifier.LOSSES, name, fn.__name__)
    prof.wrap(optim, "sgd")
    prof.wrap(gpunet._validate, "float_inputs", "checks")
    xp = np if args.backend == "numpy" else gpunet.get_array_module(gpunet.asarray([0.0]))
    ops = get_ops(xp)
    for name in dir(type(ops)):
        if not name.startswith("_") and name not in ("uniform", "name", "conv_chunk") \
                and callable(getattr(ops, name)):
            prof.wrap(ops, name, f"ops.{name}")
    if args.backend == "numpy":  # inside NumPy's convolution and pooling: where the time goes
        from gpunet.backend import numpy_ops

        for name, label in (("_conv_forward", "conv forward (chunks)"), ("_conv_backward", "conv backward (chunks)"),
                            ("_max_pool_into", "max pool"), ("_max_pool_backward_into", "max pool backward"),
                            ("_relu_backward_into", "relu backward"), ("_route", "max pool backward (numba)")):
            prof.wrap(ops, name, label)
        compiled = numpy_ops.kernels()
        if compiled is not None:  # the numba kernels (GPUNET_NUMBA=0 profiles the NumPy path)
            for name in ("bias_relu_pool", "max_pool"):
                prof.wrap(compiled, name, f"numba {name}")
        for name, label in (("columns", "im2col"), ("gradient_rows", "dout to GEMM rows"),
                            ("add_columns", "col2im"), ("workspace", "zero padded blocks")):
            prof.wrap(numpy_ops.ConvColumns, name, label)
    flops = [0]
    if args.backend == "numpy":
        for fname in ("matmul", "dot"):
            orig = getattr(np, fname)

            def counted(a, b, *rest, _orig=orig, **kw):
                flops[0] += _gemm_flops(a, b)
                return _orig(a, b, *rest, **kw)

            prof.patches.append((np, fname, orig, True))
            setattr(np, fname, counted)
            prof.wrap(np, fname, f"GEMM np.{fname}")
    net = getattr(model, "net", None)
    if isinstance(net, nn.Sequential):  # layer objects: one node per module
        for i, m in enumerate(net.layers):
            label = f"[{i}] {type(m).__name__}({m.extra_repr()})"
            prof.wrap(m, "forward", label[:40] + ".forward")
            prof.wrap(m, "backward", label[:40] + ".backward")
    prof.wrap(model, "loss", "model.loss")

    steps = max(3, int(args.min_time / step_s) + 1)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    prof_s = (time.perf_counter() - t0) / steps
    prof.unwrap()
    print(f"gpunet profile: {case.name} ({case.label}), batch {case.batch}, {dtype}, backend {args.backend}")
    print(f"{info['blas']}; threads={args.threads}")
    print(f"step {1e3 * step_s:.2f} ms unprofiled ({case.batch / step_s:,.0f} samples/s, {faults:.0f} page "
          f"faults per step), {1e3 * prof_s:.2f} ms with timers; {steps} steps\n")
    print(prof.report(steps, prof_s))
    gemm_s = sum(v[2] for k, v in prof.nodes.items() if k[-1].startswith("GEMM")) / steps
    if gemm_s:
        gf = flops[0] / steps / 1e9
        print(f"\nGEMM: {1e3 * gemm_s:.2f} ms per step ({100 * gemm_s / prof_s:.0f}%), {gf:.2f} GFLOP at "
              f"{gf / gemm_s:.0f} GFLOP/s; everything else: {1e3 * (prof_s - gemm_s):.2f} ms")
        if torch_step_ms:
            room = torch_step_ms - 1e3 * gemm_s
            print(f"PyTorch's step: {torch_step_ms:.2f} ms. For 1.0x with these GEMMs everything else must fit "
                  f"in {room:.2f} ms ({max(room, 0) / (1e3 * (prof_s - gemm_s)):.0%} of what it takes now)"
                  + ("" if room > 0 else "; the GEMMs alone are slower than PyTorch's whole step"))


def numba_ab(args) -> None:
    """The NumPy path against the numba kernels in one process: steps of each case alternate
    between the two (``args.rounds`` rounds of ``args.min_time`` seconds each way, the order
    alternating), single steps timed; medians and the per-round ratios."""
    from gpunet.backend import numpy_ops

    info = set_threads("gpunet", args.threads)
    compiled = numpy_ops.kernels()
    if compiled is None:
        raise SystemExit("--numba-ab: the numba kernels are off (numba not installed, or GPUNET_NUMBA=0)")
    print(f"{info['blas']}; threads={args.threads}; kernel threads: gpunet thread pool's ({info['pool']})")
    print(f"{'case':<12} {'dtype':<8} {'numpy ms':>9} {'numba ms':>9} {'ratio':>6}  per-round ratios (numpy/numba)")
    for name in args.cases:
        for dtype in args.dtypes:
            step, sync, _ = gpunet_step_fn(CASES[name], dtype, args.backend)
            times: dict[str, list[float]] = {"numpy": [], "numba": []}
            for r in range(args.rounds + 1):  # round 0 warms both paths up (and compiles)
                order = [("numpy", None), ("numba", compiled)]
                for label, module in order if r % 2 else order[::-1]:
                    numpy_ops._numba["module"] = module
                    step()
                    t0, n = time.perf_counter(), 0
                    while time.perf_counter() - t0 < args.min_time:
                        step()
                        n += 1
                    if r:
                        times[label].append((time.perf_counter() - t0) / n)
            numpy_ops._numba["module"] = compiled
            ratios = [a / b for a, b in zip(times["numpy"], times["numba"], strict=True)]
            print(f"{name:<12} {dtype:<8} {1e3 * statistics.median(times['numpy']):9.2f} "
                  f"{1e3 * statistics.median(times['numba']):9.2f} {statistics.median(ratios):6.2f}  "
                  + " ".join(f"{x:.2f}" for x in ratios))


def torch_profile(args) -> None:
    """PyTorch's own per-operator profile of the same step (top operators by self time)."""
    import torch

    set_threads("torch", args.threads)
    case = CASES.get(args.profile) or MEMORY_CASE
    step, sync, _ = torch_step_fn(case, args.dtypes[0], args.backend)
    step_s, _, _ = time_step(step, sync, args.warmup, args.min_time)
    steps = max(3, int(args.min_time / step_s) + 1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        for _ in range(steps):
            step()
        sync()
    print(f"\nPyTorch {torch.__version__}: step {1e3 * step_s:.2f} ms unprofiled "
          f"({case.batch / step_s:,.0f} samples/s); top operators over {steps} steps:")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    print(f"TORCH_STEP_MS {1e3 * step_s}")


# --- command line -----------------------------------------------------------------------
def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["numpy", "cupy"], default="numpy",
                    help="gpunet backend; cupy is compared with PyTorch CUDA (default numpy vs PyTorch CPU)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated (default float32,float64)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / intra-op threads of both (default 2)")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per case (default 0.5)")
    ap.add_argument("--min-time", type=float, default=1.0, help="timed seconds per case and round (default 1)")
    ap.add_argument("--frameworks", default="gpunet,torch", help="gpunet,torch (default both)")
    ap.add_argument("--malloc", choices=["default", "keep"], default="default",
                    help="keep: glibc keeps freed memory (MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_) in both "
                         "frameworks' processes instead of faulting it in again every step (default: each as it ships; "
                         "gpunet's step keeps freed memory as Solver.train() does, PyTorch's allocator is left alone)")
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help=f"skip the peak-memory run ({MEMORY_CASE.name})")
    ap.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    ap.add_argument("--profile", metavar="CASE", help="print the per-layer time of one case and exit")
    ap.add_argument("--numba-ab", action="store_true",
                    help="the NumPy path against the numba kernels, alternating steps in one process")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {','.join(QUICK_CASES)}, float32, 1 round, short timings, no memory run")
    ap.add_argument("--e2e", action="store_true",
                    help="instead of the table: one `gpunet train` epoch on Fashion-MNIST (MLP and CNN) against "
                         "a plain PyTorch loop, evaluation included")
    ap.add_argument("--e2e-model", choices=list(E2E_MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=list(STEP_FNS), help=argparse.SUPPRESS)
    ap.add_argument("--memory", dest="memory_worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.cases, args.dtypes, args.rounds = ",".join(QUICK_CASES), "float32", 1
        args.warmup, args.min_time, args.memory = 0.1, 0.2, False
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.worker:
        args.memory = args.memory_worker
        worker(args)
    elif args.numba_ab:
        numba_ab(args)
    elif args.profile:
        torch_text, torch_ms = "", None
        if "torch" in args.frameworks and torch_available():  # in a process of its own, first
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(args.threads)
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--torch-profile",
                                   *(argv if argv is not None else sys.argv[1:])],
                                  env=env, capture_output=True, text=True)
            for line in proc.stdout.splitlines():
                if line.startswith("TORCH_STEP_MS "):
                    torch_ms = float(line.split()[1])
                else:
                    torch_text += line + "\n"
            if proc.returncode:
                torch_text += proc.stderr
        profile(args, torch_ms)
        print(torch_text, end="")
    else:
        drive(args)


if __name__ == "__main__":
    if "--torch-profile" in sys.argv:
        sys.argv.remove("--torch-profile")
        torch_profile(parse())
    else:
        main()
