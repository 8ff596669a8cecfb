"""gpunet.distributed and data-parallel training with the Solver.

In-process: the single-process communicator, get_comm, lazy imports, the Solver with a
size-1 communicator (must equal no communicator bit for bit).

Under MPI (``mpiexec -n 2 python -m mpi4py`` on loopback, one BLAS thread per rank, each
launch bounded by a timeout; skipped without mpi4py/mpiexec): MPIComm's collectives
against NumPy references; training with 2 ranks bit-identical on both ranks and within
1e-12 of one process on the same global batches; BatchNorm against a 2-replica
reference; one set of checkpoints, written by rank 0; resume under MPI; a failing rank
ends the job; ``gpunet train --distributed``.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpunet
from gpunet import optim
from gpunet._install import clone_install
from gpunet.checkpoint import load_npz
from gpunet.distributed import Communicator, SingleComm, get_comm
from gpunet.solver import Solver

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "mpi_scripts"
REPO = HERE.parent


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"mpi_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


T = _load_script("train")  # data, models and settings shared with the MPI jobs


# --- single process -------------------------------------------------------------------------


def test_single_comm_is_the_identity_and_checks_its_input(backend):
    c = SingleComm()
    assert (c.rank, c.size, c.local_rank, c.local_size) == (0, 1, 0, 1)
    assert isinstance(c, Communicator)
    a = gpunet.asarray(np.arange(6.0).reshape(2, 3))
    counts = gpunet.asarray(np.array([3, 4]))
    before = gpunet.to_numpy(a).copy()
    out = c.allreduce_mean([a])
    assert out[0] is a
    np.testing.assert_array_equal(gpunet.to_numpy(out[0]), before)
    assert c.allreduce_sum([counts])[0] is counts
    assert c.bcast([a], root=0)[0] is a
    assert c.barrier() is None
    with pytest.raises(TypeError, match="allreduce_mean needs floating arrays.*allreduce_sum"):
        c.allreduce_mean([counts])
    with pytest.raises(ValueError, match=r"root must be a rank in \[0, 0\], got 1"):
        c.bcast([a], root=1)
    with pytest.raises(TypeError, match="item 0 is a list"):
        c.allreduce_sum([[1.0, 2.0]])


def test_get_comm_kinds(monkeypatch):
    for var in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(var, raising=False)
    if "mpi4py.MPI" in sys.modules:
        pytest.skip("mpi4py.MPI is already imported in this process (auto would pick MPI)")
    assert isinstance(get_comm(), SingleComm)  # not launched by MPI: one process
    assert isinstance(get_comm("single"), SingleComm)
    with pytest.raises(ValueError, match=r"kind must be one of \('auto', 'single', 'mpi', "
                                         r"'nccl'\), got 'gloo'"):
        get_comm("gloo")


def _run_python(code, timeout=60):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=_env())


def test_importing_gpunet_distributed_imports_neither_mpi4py_nor_cupy():
    r = _run_python(
        "import sys, gpunet, gpunet.distributed as d, gpunet.distributed.mpi, "
        "gpunet.distributed.nccl, gpunet.solver\n"
        "d.get_comm('single')\n"
        "print(sorted(m for m in ('mpi4py', 'cupy') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_missing_mpi4py_names_the_extra():
    # A launcher variable makes "auto" ask for MPI; mpi4py is made unimportable.
    r = _run_python(
        "import os, sys\n"
        "sys.modules['mpi4py'] = None\n"
        "os.environ['PMI_RANK'] = '0'\n"
        "from gpunet.distributed import get_comm\n"
        "for kind in ('mpi', 'auto'):\n"
        "    try:\n"
        "        get_comm(kind)\n"
        "    except ImportError as e:\n"
        "        print(e)\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "needs mpi4py" in line and 'pip install "mpi4py>=4.0"' in line
        assert "cluster's own MPI" in line and "mpich" in line


def test_cli_distributed_without_mpi4py_is_an_argparse_error():
    r = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['mpi4py'] = None; from gpunet.cli import main; "
         "main(['train', '--distributed', '--epochs', '0'])"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=_env())
    assert r.returncode == 2
    assert r.stderr.startswith("gpunet: error: --distributed: ")
    assert 'pip install "mpi4py>=4.0"' in r.stderr


def test_nccl_without_a_usable_gpu_says_what_is_missing():
    from gpunet.backend import cupy_status

    if cupy_status()[0] is not None:
        pytest.skip("a CUDA device is usable here (see the gpu tests)")
    with pytest.raises(ImportError, match="NCCL|CUDA device|CuPy"):
        get_comm("nccl")


def test_solver_with_a_single_process_comm_equals_no_comm(backend):
    """A size-1 communicator runs the data-parallel code paths (packed loss, reduced
    evaluation counts) and must change nothing, bit for bit."""
    data = T.data(n_train=120, n_val=40)

    def run(comm):
        with gpunet.use_backend(backend):
            m = T.model("dropout", seed=3)
            s = Solver(m, data, comm=comm, **T.settings("layernorm", 16))
            s.train()
        return {k: gpunet.to_numpy(v) for k, v in m.params.items()}, s.history

    p1, h1 = run(None)
    p2, h2 = run(SingleComm())
    assert h1 == h2
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k], err_msg=k)


def test_one_allreduce_per_step_carries_every_gradient_and_the_loss():
    calls = []

    class Counting(SingleComm):
        def allreduce_mean(self, arrays):
            calls.append([tuple(a.shape) for a in arrays])
            return super().allreduce_mean(arrays)

    m = T.model("layernorm")
    s = Solver(m, T.data(n_train=64, n_val=20), comm=Counting(),
               **dict(T.settings("layernorm", 16), num_epochs=2))
    s.train()
    shapes = [tuple(w.shape) for w in m.params.values()] + [()]
    assert calls == [shapes] * (2 * 4)


def test_solver_rejects_an_object_that_is_not_a_communicator():
    with pytest.raises(TypeError, match="comm must be a gpunet.distributed.Communicator.*"
                                        "has no rank, size, allreduce_mean"):
        Solver(T.model("layernorm"), T.data(n_train=40, n_val=10), comm=object())


class _Comm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def allreduce_mean(self, arrays):
        return arrays

    allreduce_sum = bcast = allreduce_mean

    def barrier(self):
        pass


@pytest.mark.parametrize("rank,size,match", [
    (2, 2, r"comm.rank must be in \[0, comm.size\), got rank=2, size=2"),
    (0, 3, r"drop_last=True with batch_size=16 > 10 training examples per process \(3 "),
])
def test_solver_checks_the_communicator_and_the_shares(rank, size, match):
    data = T.data(n_train=30, n_val=10)
    with pytest.raises(ValueError, match=match):
        Solver(T.model("layernorm"), data, comm=_Comm(rank, size), drop_last=True,
               **T.settings("layernorm", 16))


def test_too_few_examples_for_the_processes():
    with pytest.raises(ValueError, match="2 training examples cannot be shared by 3 processes"):
        Solver(T.model("layernorm"), T.data(n_train=2, n_val=10), comm=_Comm(0, 3),
               **T.settings("layernorm", 16))


# --- under MPI --------------------------------------------------------------------------------


def _mpiexec():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason=f"needs mpi4py and an MPI launcher: `{clone_install('mpi')} mpich`",
)


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               GPUNET_BACKEND=env.get("GPUNET_BACKEND", "numpy"),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]))
    return env


def mpirun(args, n=2, timeout=90, env=None):
    """Run ``mpiexec -n n python -m mpi4py *args``; ``(returncode, stdout, stderr, seconds)``.
    The whole process group is killed if it outlives ``timeout``."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *map(str, args)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env or _env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mpiexec passes it on to the ranks
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s\n{out}\n{err}")
    return proc.returncode, out, err, time.perf_counter() - start


def _ok(result):
    code, out, err, _ = result
    assert code == 0, f"exit code {code}\n{out}\n{err}"
    return out


def _load(out, job, rank):
    z = np.load(out / f"{job}.rank{rank}.npz")
    return {k: z[k] for k in z.files}, json.loads((out / f"{job}.rank{rank}.json").read_text())


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-rank launch training the layernorm, batchnorm, and dropout (4 epochs, and 2
    epochs) jobs; then a second launch resuming the 2-epoch run to 4 epochs."""
    if MPIEXEC is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip(f"needs mpi4py and an MPI launcher: `{clone_install('mpi')} mpich`")
    out = tmp_path_factory.mktemp("mpi")
    _ok(mpirun([SCRIPTS / "train.py", out, "layernorm", "batchnorm", "dropout_straight",
                "dropout_short"]))
    _ok(mpirun([SCRIPTS / "train.py", out, "dropout_resume"]))
    return out


@needs_mpi
@pytest.mark.parametrize("job", ["layernorm", "batchnorm", "dropout_straight", "dropout_resume"])
def test_parameters_are_bit_identical_on_all_ranks(trained, job):
    (a0, i0), (a1, i1) = _load(trained, job, 0), _load(trained, job, 1)
    _same(a0, a1)  # parameters and BatchNorm running statistics
    assert i0["history"] == i1["history"]
    assert (i0["epoch"], i0["iteration"], i0["best_epoch"], i0["t"]) == \
           (i1["epoch"], i1["iteration"], i1["best_epoch"], i1["t"])
    # Dropout masks come from per-rank streams, so the generators differ between ranks.
    assert i0["rng"] != i1["rng"]


@needs_mpi
def test_two_ranks_equal_one_process_on_the_same_global_batches(trained):
    """2 ranks x batch 16 vs 1 process x batch 32 with the same seed: the same global
    batches, so the same training up to rounding (the model's layernorm is per sample)."""
    a0, i0 = _load(trained, "layernorm", 0)
    data = T.data()
    ref = T.model("layernorm", seed=100)  # rank 0's initialisation, which rank 0 broadcasts
    s = Solver(ref, data, **T.settings("layernorm", 2 * T.PER_RANK_BATCH))
    s.train()
    assert i0["iterations_per_epoch"] == s.iterations_per_epoch == 13  # 400 / 32 rounded up
    for k, w in ref.params.items():
        np.testing.assert_allclose(a0[f"p/{k}"], w, rtol=0, atol=1e-12, err_msg=k)
    h = i0["history"]
    np.testing.assert_allclose(h["loss"], s.history["loss"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h["val_loss"], s.history["val_loss"], rtol=0, atol=1e-12)
    assert h["val_acc"] == s.history["val_acc"] and h["train_acc"] == s.history["train_acc"]
    assert (i0["best_epoch"], h["lr"]) == (s.best_epoch, s.history["lr"])
    # The guard: the other ranks' initialisations were not used.
    other = T.model("layernorm", seed=101)
    assert not np.allclose(gpunet.to_numpy(other.params["W1"]),
                           gpunet.to_numpy(T.model("layernorm", seed=100).params["W1"]))


@needs_mpi
def test_device_arrays_take_the_same_path(trained, tmp_path):
    """The array_api_strict backend (arrays on a non-CPU device, the stand-in for CuPy):
    packing, unpacking and state placement work on device arrays and change no bit."""
    env = _env()
    env["GPUNET_BACKEND"] = "strict"
    _ok(mpirun([SCRIPTS / "train.py", tmp_path, "layernorm"], env=env))
    for r in (0, 1):
        _same(_load(tmp_path, "layernorm", r)[0], _load(trained, "layernorm", 0)[0])


class _Recording(type(T.model("batchnorm"))):
    """Records the training batches the single-process Solver takes."""

    def loss(self, X, y=None):
        if y is not None:
            self.batches.append((X.copy(), y.copy()))
        return super().loss(X, y)


def test_batchnorm_reference_is_sensitive_to_the_split():
    """Guard for the next test: BatchNorm on the two half batches differs from BatchNorm
    on the whole batch, so the 2-replica reference is not the single-process run."""
    data = T.data()
    m1, m2 = T.model("batchnorm", seed=100), T.model("batchnorm", seed=100)
    X, y = data["X_train"][:32], data["y_train"][:32]
    _, g_whole = m1.loss(X, y)
    g_halves = [m2.loss(X[r::2], y[r::2])[1] for r in (0, 1)]
    assert not np.allclose(g_whole["W1"], (g_halves[0]["W1"] + g_halves[1]["W1"]) / 2,
                           atol=1e-6)


@needs_mpi
def test_batchnorm_matches_two_replicas_with_averaged_gradients_and_statistics(trained):
    """Reference without MPI or the Solver's data-parallel code: two model replicas share
    the parameters; on each global batch of the single-process run (batch 32), replica r
    takes rows r::2, the gradients are averaged and applied with sgd_momentum; at each
    epoch end the running statistics of the replicas are averaged."""
    a0, _ = _load(trained, "batchnorm", 0)
    data = T.data()
    kw = T.settings("batchnorm", 2 * T.PER_RANK_BATCH)
    rec = _Recording([24], input_dim=64, num_classes=10, normalization="batchnorm",
                     dtype=np.float64, weight_scale="he", seed=100)
    rec.batches = []
    Solver(rec, data, **kw).train()  # only to learn the global batches (they depend on the seed)
    ipe = -(-400 // 32)
    assert len(rec.batches) == kw["num_epochs"] * ipe

    reps = [T.model("batchnorm", seed=100), T.model("batchnorm", seed=100)]
    params = reps[0].params
    reps[1].params = params
    configs = {k: dict(kw["optim_config"]) for k in params}
    for epoch in range(kw["num_epochs"]):
        for X, y in rec.batches[epoch * ipe:(epoch + 1) * ipe]:
            grads = [m.loss(X[r::2], y[r::2])[1] for r, m in enumerate(reps)]
            for k in params:
                w, configs[k] = optim.sgd_momentum(params[k], (grads[0][k] + grads[1][k]) / 2,
                                                   configs[k])
                params[k] = w
        bufs = [m.get_buffers() for m in reps]
        mean = {k: (bufs[0][k] + bufs[1][k]) / 2 for k in bufs[0]}
        for m in reps:
            m.set_buffers({k: v.copy() for k, v in mean.items()})
    for k, w in params.items():
        np.testing.assert_allclose(a0[f"p/{k}"], w, rtol=0, atol=1e-12, err_msg=k)
    for k, b in reps[0].get_buffers().items():
        np.testing.assert_allclose(a0[f"b/{k}"], b, rtol=0, atol=1e-12, err_msg=k)


@needs_mpi
def test_only_rank_0_writes_one_set_of_checkpoints(trained):
    _, i0 = _load(trained, "dropout_straight", 0)
    _, i1 = _load(trained, "dropout_straight", 1)
    assert i1["writes"] == []
    assert i0["writes"].count("a_epoch_4.npz") == 1
    assert sorted(set(i0["writes"])) == sorted(p.name for p in trained.glob("a_*"))
    assert sorted(p.name for p in trained.glob("a_*")) == [
        "a_best.npz", "a_epoch_1.npz", "a_epoch_2.npz", "a_epoch_3.npz", "a_epoch_4.npz",
        "a_last.npz"]
    assert not list(trained.glob(".*tmp"))  # no temporary files left by a second writer
    # The file holds the final state: averaged running statistics, rank 0's parameters.
    final, _ = _load(trained, "dropout_straight", 0)
    arrays, meta = load_npz(trained / "a_epoch_4.npz")
    assert meta["world_size"] == 2 and meta["epoch"] == 4
    for k, v in final.items():
        kind, name = k.split("/", 1)
        np.testing.assert_array_equal(arrays[f"{'param' if kind == 'p' else 'buffer'}/{name}"],
                                      v, err_msg=k)


@needs_mpi
def test_resume_under_mpi_continues_identically(trained):
    """2 epochs, checkpoint, a new 2-rank job resuming to 4 (models initialised
    differently on every rank) == 4 epochs straight; dropout and BatchNorm included."""
    straight, i_straight = _load(trained, "dropout_straight", 0)
    resumed, i_resumed = _load(trained, "dropout_resume", 0)
    _same(straight, resumed)
    assert i_straight["history"] == i_resumed["history"]
    assert i_straight["t"] == i_resumed["t"] and i_straight["iteration"] == i_resumed["iteration"]
    for r in (0, 1):  # every rank's dropout generator continues where it was
        assert _load(trained, "dropout_straight", r)[1]["rng"] == \
               _load(trained, "dropout_resume", r)[1]["rng"]
    assert [w for w in i_resumed["writes"] if "epoch" in w] == ["r_epoch_3.npz", "r_epoch_4.npz"]


@needs_mpi
def test_a_failing_rank_ends_the_whole_job(tmp_path):
    code, out, err, seconds = mpirun([SCRIPTS / "train.py", tmp_path, "fail"], timeout=60)
    assert code != 0
    assert seconds < 30
    assert "RuntimeError: injected failure on rank 1" in err
    assert "MPI_Abort" in err or "abort" in err.lower()


@needs_mpi
def test_comm_collectives_against_numpy(tmp_path):
    _ok(mpirun([SCRIPTS / "comm.py", tmp_path]))
    comm_script = _load_script("comm")
    ins = [comm_script.inputs(r) for r in (0, 1)]
    res = [_load(tmp_path, "comm", r) for r in (0, 1)]
    for arrays, info in res:
        assert info["size"] == 2
        # allreduce_mean: sum over ranks then / 2, in each input's dtype, written in place
        for i in range(6):
            x0, x1 = (np.asarray(ins[r][i]) for r in (0, 1))
            wire = np.float32 if x0.dtype == np.float16 else x0.dtype
            expected = ((x0.astype(wire) + x1.astype(wire)) / 2).astype(x0.dtype)
            np.testing.assert_array_equal(arrays[f"mean{i}"], expected, err_msg=str(i))
            assert info[f"mean{i}_dtype"] == str(x0.dtype)
        assert info["mean_in_place"] == [True, True, True, True, False, False]
        assert info["view_base_written"]
        # one layout check, then one Allreduce per wire dtype (float64; float32 + float16)
        assert info["mean_calls"] == ["Allreduce"] * 3
        assert info["mean_calls_again"] == ["Allreduce"] * 2
        np.testing.assert_array_equal(arrays["sum_int"], [3, 10])
        assert arrays["sum_int"].dtype == np.int64
        # bcast from root 1: one check, one Bcast per dtype (float64, int32, bool)
        assert info["bcast_calls"] == ["Allreduce", "Bcast", "Bcast", "Bcast"]
        np.testing.assert_array_equal(arrays["bcast0"], np.full((2, 3), 1.0))
        np.testing.assert_array_equal(arrays["bcast1"], np.arange(4) * 2)
        assert arrays["bcast1"].dtype == np.int32
        np.testing.assert_array_equal(arrays["bcast2"], [True, True])
        assert info["barrier_calls"] == ["Barrier"]
        e = info["errors"]
        assert e["shape"].startswith("ValueError: allreduce_mean: the ranks passed different")
        assert e["dtype"].startswith("ValueError: bcast with root=0: the ranks passed different")
        assert e["int_mean"].startswith("TypeError: allreduce_mean needs floating arrays")
        assert e["root"] == "ValueError: root must be a rank in [0, 1], got 2"
        assert e["not_array"].startswith("TypeError: allreduce_sum: item 0 is a list")
    assert res[0][1]["rank"] == 0 and res[1][1]["rank"] == 1
    _same(res[0][0], res[1][0])  # every rank received the same bits


@needs_mpi
def test_cli_train_distributed(tmp_path):
    prefix = tmp_path / "run"
    code, out, err, _ = mpirun(["-m", "gpunet", "train", "--distributed", "--epochs", "3",
                                "--normalization", "batchnorm", "--checkpoint", prefix,
                                "--keep-every", "1"])
    assert code == 0, err
    assert out.count("test accuracy:") == 1 and out.count("backend:") == 1  # rank 0 only
    assert ("distributed: 2 process(es) over MPI; batch size 32 per process, 64 per step; "
            "1258 of 1258 training samples per epoch") in out
    acc = float(out.split("test accuracy:")[1].split()[0])
    assert acc > 0.5  # 10 classes
    assert "not started with `python -m mpi4py`" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_best.npz", "run_epoch_1.npz", "run_epoch_2.npz", "run_epoch_3.npz", "run_last.npz"]
    # Resume under MPI from rank 0's checkpoint.
    code, out, err, _ = mpirun(["-m", "gpunet", "train", "--distributed", "--epochs", "4",
                                "--normalization", "batchnorm", "--quiet",
                                "--resume", tmp_path / "run_epoch_3.npz"])
    assert code == 0, err
    assert out.count("test accuracy:") == 1


@needs_mpi
def test_a_failure_on_one_rank_is_raised_on_every_rank(tmp_path):
    """Rank 0 cannot write a checkpoint / find the resume file; rank 1 was built with
    another batch size; rank 1's loss turns NaN: each time both ranks raise (no rank
    waits alone in a collective) and the job goes on to the next case."""
    _ok(mpirun([SCRIPTS / "train.py", tmp_path, "errors"]))
    e0, e1 = (json.loads((tmp_path / f"errors.rank{r}.json").read_text()) for r in (0, 1))
    assert e0["write"] == ["OSError", "disk full (injected)"]
    assert e1["write"] == ["RuntimeError", "rank(s) [0] failed to write the checkpoint: rank 0: "
                                           "OSError: disk full (injected)"]
    assert e0["write_epoch"] == e1["write_epoch"] == 2
    assert e0["missing"][0] == "FileNotFoundError" and "missing.npz" in e0["missing"][1]
    assert e1["missing"][0] == "RuntimeError"
    assert e1["missing"][1].startswith("rank 0 failed to load checkpoint")
    assert e1["mismatch"][0] == "ValueError" and "batch_size=16" in e1["mismatch"][1]
    assert e0["mismatch"][0] == "RuntimeError"  # with rank 1's reason, which rank 0 may print
    assert e0["mismatch"][1].startswith("rank(s) [1] failed to take over rank 0's training state "
                                        "(build the same Solver and model on every rank): rank 1: "
                                        "ValueError: rank 0's state has batch_size=")
    assert "batch_size=16" in e0["mismatch"][1]
    # The loss history holds the mean over ranks, so rank 1's NaN stops both at iteration 5.
    for e in (e0, e1):
        assert e["nan"][0] == "NonFiniteLossError" and "at iteration 5 of 24" in e["nan"][1]
        assert e["nan_at"] == [7, 4]


# --- on GPUs (pytest -m gpu) ------------------------------------------------------------------


def _gpu_count():
    from gpunet.backend import cupy_status

    cupy, _ = cupy_status()
    return 0 if cupy is None else cupy.cuda.runtime.getDeviceCount()


def _gpu_layernorm_run(tmp_path, kind, n, cuda_aware=False):
    env = _env()
    env.update(GPUNET_BACKEND="cupy", GPUNET_TEST_COMM=kind,
               GPUNET_TEST_CUDA_AWARE="1" if cuda_aware else "0")
    _ok(mpirun([SCRIPTS / "train.py", tmp_path, "layernorm"], n=n, env=env, timeout=300))
    runs = [_load(tmp_path, "layernorm", r)[0] for r in range(n)]
    for other in runs[1:]:
        _same(runs[0], other)
    ref = T.model("layernorm", seed=100)  # on NumPy: CuPy's float64 sums round differently
    Solver(ref, T.data(), **T.settings("layernorm", n * T.PER_RANK_BATCH)).train()
    for k, w in ref.params.items():
        np.testing.assert_allclose(runs[0][f"p/{k}"], w, rtol=0, atol=1e-9, err_msg=k)


@needs_mpi
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_aware", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        os.environ.get("GPUNET_TEST_CUDA_AWARE") != "1",
        reason="set GPUNET_TEST_CUDA_AWARE=1 when the MPI library is CUDA-aware")),
])
def test_cupy_over_mpi(tmp_path, cuda_aware):
    """CuPy parameters, MPI through host buffers (or device buffers if CUDA-aware); both
    ranks may share one GPU."""
    _gpu_layernorm_run(tmp_path, "mpi", 2, cuda_aware)


@needs_mpi
@pytest.mark.gpu
def test_cupy_over_nccl(tmp_path):
    """NCCL needs one GPU per rank: 2 ranks with 2 GPUs, else 1 rank (setup only)."""
    try:
        from gpunet.distributed.nccl import import_nccl

        import_nccl()
    except ImportError as exc:
        pytest.skip(str(exc))
    _gpu_layernorm_run(tmp_path, "nccl", 2 if _gpu_count() >= 2 else 1)
