"""scripts/bench.py --quick runs end to end for gpunet alone (no PyTorch needed) and prints
its table; the timings themselves are benchmarks, never asserted here."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"


def test_bench_quick_prints_a_table(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--frameworks", "gpunet", "--json", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.skip("bench --quick took more than 60 s on this machine (busy?)")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case "))
    assert "gpunet/s" in lines[header] and "ratio" in lines[header] and "GEMM" in lines[header]
    rows = [line.split() for line in lines[header + 2:] if line.strip()]
    assert {r[0] for r in rows} >= {"mlp784-b32", "cnn"}
    assert any("blas" in line.lower() or "openblas" in line.lower() for line in lines[:header])
    table = json.loads(out.read_text())
    assert {r["case"] for r in table["rows"]} == {"mlp784-b32", "cnn"}
    for r in table["rows"]:
        assert r["gpunet_samples_per_s"] > 0 and r["torch_samples_per_s"] is None
        assert 0 < r["gemm_share"] <= 1


def test_bench_profile_prints_the_layers():
    cmd = [sys.executable, str(BENCH), "--profile", "cnn", "--frameworks", "gpunet", "--dtypes", "float32",
           "--warmup", "0.05", "--min-time", "0.1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.skip("bench --profile took more than 60 s on this machine (busy?)")
    assert proc.returncode == 0, proc.stderr
    for part in ("call path", "conv_relu_pool_forward", "ops.conv_relu_pool_backward", "GEMM np.matmul",
                 "GEMM:", "everything else"):
        assert part in proc.stdout


def test_bench_runs_the_sequential_and_functional_conv_nets():
    """The nn.Sequential version next to each CS231n-style CNN: every case runs and trains."""
    cmd = [sys.executable, str(BENCH), "--cases", "cnn-seq,conv3,conv3-seq", "--dtypes", "float32", "--rounds", "1",
           "--warmup", "0.02", "--min-time", "0.05", "--frameworks", "gpunet", "--no-memory"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.skip("bench took more than 120 s on this machine (busy?)")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0] for line in proc.stdout.splitlines() if line.split()[:1]}
    assert {"cnn-seq", "conv3", "conv3-seq"} <= rows


@pytest.mark.parametrize("case", ["cnn-seq", "conv3", "conv3-seq"])
def test_bench_conv_cases_train(case):
    """Each new case's gpunet step lowers the loss on its fixed batch (SGD, lr 1e-3) and
    returns a gradient for every parameter."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpunet_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    small = bench.Case(case, bench.CASES[case].model, 4)
    step, _, model = bench.gpunet_step_fn(small, "float64", "numpy")
    first = float(step())
    for _ in range(10):
        last = float(step())
    assert last < first
    X = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    _, grads = model.loss(X, np.array([1, 2]))
    assert set(grads) == set(model.params)
