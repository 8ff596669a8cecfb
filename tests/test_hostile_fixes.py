"""Regression tests for the defects the hostile-input pass (scripts/hostile.py) found: each
input used to end in a traceback from inside NumPy or gpunet, a silent wrong result or an
allocation the file could not hold, and now ends in a clear error (or the right result)."""

import importlib.util
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from test_cli import cli  # (gpunet ARGV in this process: exit code, stdout, stderr)

import gpunet
from gpunet import layers as L
from gpunet import models, nn
from gpunet._validate import ArgumentError, choice
from gpunet.checkpoint import CheckpointError, load_npz, save_npz_atomic
from gpunet.cli import main
from gpunet.solver import Solver

SOURCE = Path(gpunet.__file__).resolve().parents[1]  # where the gpunet under test lives


def _data(n=20, d=4, classes=3, seed=0):
    r = np.random.default_rng(seed)
    X = r.standard_normal((n + 10, d)).astype(np.float32)
    y = r.integers(0, classes, n + 10)
    return {"X_train": X[:n], "y_train": y[:n], "X_val": X[n:], "y_val": y[n:]}


def _quiet(**kw):
    return {"num_epochs": 1, "batch_size": 5, "verbose": False, **kw}


# --- layers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call,fragment", [
    (lambda x: L.affine_forward(x, np.ones((4, 2)), None), "affine_forward: b must be a real floating array"),
    (lambda x: L.relu_forward("x"), "relu_forward: x must be a real floating array"),
    (lambda x: L.conv_forward(x.reshape(1, 1, 2, 2), [[[[1.0]]]], np.zeros(1), {}), "conv_forward: w must be"),
    (lambda x: L.batchnorm_forward(x, np.ones(4), np.zeros(4), {"mode": "test", "running_mean": [0.0] * 4}),
     "batchnorm_forward: running_mean must be a real floating array"),
])
def test_a_layer_names_an_argument_that_is_not_an_array(call, fragment):
    # was: AttributeError ('NoneType' object has no attribute 'shape') or a TypeError naming no argument
    with pytest.raises(ArgumentError) as err:
        call(np.ones((1, 4)))
    assert fragment in str(err.value) and "gpunet.asarray" in str(err.value)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix, on purpose
def test_matrix_and_masked_arrays_are_refused():
    # np.matrix's * is a matrix product: dropout "worked" with a wrong mask product
    with pytest.raises(ArgumentError, match="x must be a real floating array .* got matrix"):
        L.dropout_forward(np.asmatrix(np.ones((3, 3))), {"p": 0.5, "mode": "train", "seed": 1})
    with pytest.raises(ArgumentError, match="got MaskedArray"):
        L.relu_forward(np.ma.masked_array(np.ones(3), mask=[0, 1, 0]))


def test_dropout_checks_rng_next_to_seed_dout_against_the_mask_and_a_tiny_p():
    x = np.ones((3, 4))
    with pytest.raises(ArgumentError, match=r"dropout_param\['rng'\] must be a numpy.random.Generator, got 42"):
        L.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1, "rng": 42})  # was: ignored
    _, cache = L.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1})
    with pytest.raises(ArgumentError, match="dout=float32, x=float64"):
        L.dropout_backward(np.ones((3, 4), np.float32), cache)  # was: a float64 dx, silently
    with pytest.raises(ArgumentError, match=r"dropout_param\['p'\] \(the keep probability\) = 1e-300 is too "
                                            "small for float32"):
        L.dropout_forward(x.astype(np.float32), {"p": 1e-300, "mode": "train", "seed": 1})  # was: NaN
    with pytest.raises(ArgumentError, match=r"FullyConnectedNet: dropout_keep_ratio .* = 1e-300 is too small"):
        models.FullyConnectedNet([3], input_dim=2, dropout_keep_ratio=1e-300)  # was: NaN losses


@pytest.mark.parametrize("conv", [L.conv_forward, L.conv_forward_naive])
def test_a_convolution_no_array_could_hold_is_refused(conv):
    x, w, b = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), np.zeros(1)
    for pad in (2**40, 2**70):  # was: NumPy's "array is too big" / "Maximum allowed dimension exceeded"
        with pytest.raises(ArgumentError, match="more than any array can hold; use a smaller pad"):
            conv(x, w, b, {"pad": pad})


def test_the_naive_convolution_refuses_an_empty_kernel():
    # was: accepted, giving b everywhere (conv_forward refuses it)
    with pytest.raises(ArgumentError, match="conv_forward_naive: w must have a non-empty kernel"):
        L.conv_forward_naive(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 0)), np.zeros(1), {})


def test_pool_window_errors_name_the_window():
    x, w, b = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.zeros(1)
    with pytest.raises(ArgumentError, match=r"window 9 \(pool_height\)"):
        L.conv_relu_pool_forward(x, w, b, {"pad": 1}, {"pool_height": 9, "pool_width": 2})
    with pytest.raises(ArgumentError, match=r"the window \(pool_param\['pool_width'\] = 9\)"):
        L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 9})


# --- models and layer objects -----------------------------------------------------------------


@pytest.mark.parametrize("make,fragment", [
    (lambda: models.TwoLayerNet(weight_scale=-1), "TwoLayerNet: weight_scale must be"),  # was: "init must be"
    (lambda: models.TwoLayerNet(dtype=None), "TwoLayerNet: dtype must be a floating dtype"),  # was: float64
    (lambda: models.TwoLayerNet(dtype=np.longdouble), "dtype must be a floating dtype"),
    (lambda: models.TwoLayerNet(input_dim=2**70), "more than any array can hold"),  # was: NumPy ValueError
    (lambda: nn.LayerNorm(2**70), "more than any array can hold"),
    (lambda: models.ThreeLayerConvNet(input_dim=(1, 5, 4)), "input_dim (C, H, W) must have an even height"),
])
def test_model_constructors_name_the_argument(make, fragment):
    with pytest.raises(ArgumentError) as err:
        make()
    assert fragment in str(err.value)


@pytest.mark.parametrize("X,fragment", [
    (None, "got NoneType"), ([[1.0] * 5], "got list"), (np.ones((2, 5), np.complex64), "got complex64"),
])
def test_model_loss_names_an_input_that_is_not_real_numbers(X, fragment):
    with pytest.raises(ArgumentError, match=f"TwoLayerNet: X must be an array of samples .* {fragment}"):
        models.TwoLayerNet(5, 4, 3, seed=0).loss(X)  # was: AttributeError, or complex cast to real


def test_logistic_classifier_checks_its_labels():
    model, X = models.LogisticClassifier(3, seed=0), np.ones((2, 3), np.float32)
    with pytest.raises(ArgumentError, match="LogisticClassifier.loss: y must be an integer array"):
        model.loss(X, np.array([0.5, 1.0]))  # was: float targets accepted
    with gpunet.use_backend("strict"):
        y = gpunet.asarray(np.array([0, 1]))
    with pytest.raises(TypeError, match="two backends"):
        model.loss(X, y)  # was: a TypeError from inside NumPy


# --- the Solver -------------------------------------------------------------------------------


def test_solver_checks_labels_and_sample_shapes_when_built():
    model = models.TwoLayerNet(4, 5, 3, seed=0)
    data = _data()
    with pytest.raises(ArgumentError, match=r"Solver: data\['y_train'\] must have shape \(20,\)"):
        Solver(model, {**data, "y_train": data["y_train"][:, None]}, **_quiet())  # was: at the first step
    with pytest.raises(ValueError, match=r"data\['X_train'\] has samples of shape \(4,\) and data\['X_val'\]"):
        Solver(model, {**data, "X_val": data["X_val"][:, :3]}, **_quiet())
    with pytest.raises(TypeError, match=r"data\['X_train'\] must hold real numbers, got dtype complex64"):
        Solver(model, {**data, "X_train": data["X_train"].astype(np.complex64)}, **_quiet())


def test_solver_names_a_model_that_does_not_take_the_data():
    with pytest.raises(ArgumentError, match=r"the model cannot take data\['X_val'\] \(samples of shape \(3,\)\)"):
        Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(d=3), **_quiet()).train()


def test_an_optimizer_setting_passed_to_the_solver_says_where_it_goes():
    with pytest.raises(ValueError, match=r"'learning_rate' goes in optim_config"):
        Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), learning_rate=0.1)
    with pytest.raises(ValueError, match=r"'num_epoch': did you mean 'num_epochs'"):
        Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), num_epoch=2)


def test_the_checkpoint_directory_is_tried_when_the_solver_is_built():
    # was: a FileNotFoundError from pathlib after the first epoch
    with pytest.raises(OSError, match="checkpoint_name '/proc/nope/run': cannot write in /proc/nope"):
        Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), checkpoint_name="/proc/nope/run", **_quiet())


def test_check_accuracy_checks_samples_and_labels():
    data = _data()
    s = Solver(models.TwoLayerNet(4, 5, 3, seed=0), data, **_quiet(num_epochs=0))
    with pytest.raises(ArgumentError, match=r"check_accuracy: y must have shape \(10,\)"):
        s.check_accuracy(data["X_val"], data["y_val"][:, None])  # was: an "accuracy" of 3.3
    with pytest.raises(ArgumentError, match="check_accuracy: X must be an array of samples"):
        s.check_accuracy(None, data["y_val"])  # was: AttributeError
    with pytest.raises(ArgumentError, match=r"the model cannot take X \(samples of shape \(2,\)\)"):
        s.check_accuracy(data["X_val"][:, :2], data["y_val"])
    with pytest.raises(ArgumentError, match="check_accuracy: batch_size must be an int >= 1, got 0"):
        s.check_accuracy(data["X_val"], data["y_val"], batch_size=0)  # was: the default, silently


def test_an_update_rule_without_a_learning_rate_trains_with_a_schedule():
    def rule(w, dw, config):  # a user's rule: no learning rate in its config
        w -= 0.01 * dw
        return w, config

    s = Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), update_rule=rule, lr_schedule="cosine",
               **_quiet(verbose=True, progress=False))
    s.train()  # was: TypeError formatting the learning rate None in the progress line
    assert len(s.history["val_acc"]) == 1


def test_choice_does_not_take_1_for_true():
    with pytest.raises(ArgumentError, match="progress must be one of 'auto', True, False, got 1"):
        Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), progress=1, **_quiet())
    assert choice("flag", np.True_, (True, False)) and choice("n", None, (None, "a")) is None


# --- checkpoints ------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    """A Solver checkpoint (Adam, 1 epoch) and a function writing it with changed metadata."""
    s = Solver(models.TwoLayerNet(4, 5, 3, seed=0), _data(), update_rule="adam",
               checkpoint_name=str(tmp_path / "run"), **_quiet())
    s.train()
    arrays, meta = load_npz(tmp_path / "run_last.npz")

    def changed(**entries):
        new = dict(meta)
        for key, value in entries.items():
            new[key] = value(new[key]) if callable(value) else value
        return save_npz_atomic(tmp_path / "changed.npz", arrays, new)

    return meta, changed


@pytest.mark.parametrize("change,fragment", [
    (dict(optim_scalars=lambda v: {p: {**c, "beta1": "0.9"} for p, c in v.items()}),
     "the saved optimizer state of 'W1' is not adam's"),  # was: loaded, then a TypeError in the next step
    (dict(base_lr=lambda v: dict.fromkeys(v, -1.0)), "base_lr['W1'] must be a finite number >= 0.0"),
    (dict(num_epochs={}), "num_epochs must be an int >= 0"),  # was: ignored when num_epochs was passed
    (dict(update_rule={"a": 1}), "update_rule must be a name"),  # was: "unhashable type: 'dict'"
    (dict(schedule={"type": "StepDecay", "decay": 1.0, "step_size": True}), "step_size must be an int"),
    (dict(world_size=None), "world_size must be an int >= 1"),  # was: a TypeError in a warning's f-string
])
def test_a_checkpoint_with_bad_metadata_is_refused_and_changes_nothing(checkpoint, change, fragment):
    _, changed = checkpoint
    path = changed(**change)
    s = Solver(models.TwoLayerNet(4, 5, 3, seed=1), _data(), **_quiet(num_epochs=3))  # takes the file's rule
    before = {k: gpunet.to_numpy(v).copy() for k, v in s.model.params.items()}
    with pytest.raises(CheckpointError) as err:
        s.load_checkpoint(path)
    assert str(path) in str(err.value) and fragment in str(err.value)
    assert s.epoch == 0 and all(np.array_equal(before[k], gpunet.to_numpy(v)) for k, v in s.model.params.items())


def _model_file(tmp_path, spec_args):
    """A model file (a 4-5-3 TwoLayerNet's arrays) whose description asks for ``spec_args``."""
    path = models.TwoLayerNet(4, 5, 3, seed=0).save(tmp_path / "m.npz")
    arrays, meta = load_npz(path)
    meta["model"]["args"].update(spec_args)
    return save_npz_atomic(tmp_path / "crafted.npz", arrays, meta)


def test_a_model_description_larger_than_its_file_is_refused_before_allocating(tmp_path):
    path = _model_file(tmp_path, {"input_dim": 3000, "hidden_dim": 3000})  # 9e6 weights from a 1 KB file
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="more than the 43 numbers the file holds"):
            gpunet.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # was: 72 MB of float64 draws (and 6.7 GiB for 30000 x 30000)


def test_load_model_errors_are_checkpoint_errors(tmp_path):
    path = _model_file(tmp_path, {"hidden_dim": 6})
    with pytest.raises(CheckpointError, match="parameter 'W1' has shape \\(4, 5\\)"):  # was: a ValueError
        gpunet.load_model(path)


# --- gpunet.asarray ---------------------------------------------------------------------------


@pytest.mark.parametrize("x,dtype,fragment", [
    ("abc", None, "x must hold numbers .* got str of dtype <U3"),  # was: a string array
    ([[1, 2], [3]], None, "x must be numbers .* got list"),  # was: NumPy's "inhomogeneous shape"
    ([1, 2**70], None, "x must hold numbers .* got list of dtype object"),  # was: an object array
    (1 + 2j, "float32", "x must be numbers .* got complex"),  # was: the imaginary part dropped
    ([1.0], "float33", "dtype must be a numeric dtype .* got 'float33'"),  # was: NumPy's TypeError
    ([1.0], object, "dtype must be a numeric dtype"),
])
def test_asarray_takes_numbers_only(x, dtype, fragment):
    with pytest.raises(TypeError, match=f"asarray: {fragment}"):
        gpunet.asarray(x, dtype=dtype)


def test_asarray_onto_strict_refuses_float16_itself():
    with gpunet.use_backend("strict"), pytest.raises(TypeError, match="the strict backend has no float16"):
        gpunet.asarray(np.ones(2, np.float16))  # was: array_api_strict's TypeError


# --- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "--epochs", "1", "--hidden", "8", "--quiet", "--checkpoint", str(d / "ck")]) == 0
    return d


@pytest.mark.parametrize("argv,status,fragment", [
    (["eval", "{ck}", "--backend", "cupy"], 2, "--backend cupy: "),  # was: exit 1 without the flag
    (["predict", "{ck}", "{archive}", "-o", "{d}/l.npy"], 1, "is an .npz archive"),  # was: "--debug" hint
    (["predict", "{ck}", "{good}", "-o", "{d}/missing/l.npy"], 2, "-o {d}/missing/l.npy: the directory"),
    (["eval", "{crafted}"], 1, "records an unusable eval_batch_size 'x'"),  # was: predict's batch_size error
])
def test_eval_and_predict_errors_name_the_flag_or_the_file(trained, capsys, argv, status, fragment):
    from gpunet.backend import cupy_status

    if "cupy" in argv and cupy_status()[0] is not None:
        pytest.skip("a CUDA device is usable here")
    d = trained
    np.savez(d / "in.npz", X=np.ones((2, 64), np.float32))
    np.save(d / "in.npy", np.ones((2, 64), np.float32))
    arrays, meta = load_npz(d / "ck_best.npz")
    save_npz_atomic(d / "crafted.npz", arrays, {**meta, "run": {**meta["run"], "eval_batch_size": "x"}})
    subs = {"{ck}": d / "ck_best.npz", "{archive}": d / "in.npz", "{good}": d / "in.npy", "{d}": d,
            "{crafted}": d / "crafted.npz"}
    argv = [str(a) for a in argv]
    for k, v in subs.items():
        argv = [a.replace(k, str(v)) for a in argv]
        fragment = fragment.replace(k, str(v))
    code, _, err = cli(argv, capsys)
    assert code == status and err.count("\n") == 1 and fragment in err and "--debug" not in err, err


def test_predict_of_no_samples_writes_no_labels(trained, capsys):
    np.save(trained / "none.npy", np.ones((0, 64), np.float32))
    code, out, err = cli(["predict", trained / "ck_best.npz", trained / "none.npy", "-o", trained / "l.npy"],
                          capsys)
    assert code == 0, err  # was: "cannot reshape array of size 0"
    assert np.load(trained / "l.npy").shape == (0,)


def test_a_parameter_budget_is_per_block():
    from gpunet.init import check_shape, parameter_budget

    with parameter_budget(10, "ten numbers"):
        check_shape((2, 3))
        with pytest.raises(ArgumentError, match=r"parameters of shape \(2, 3\) .* are more than ten numbers"):
            check_shape((2, 3))
    assert check_shape((2, 3)) == (2, 3)  # no budget outside the block



# --- MPI: a bad setting on one rank -------------------------------------------------------------

_RANK_SCRIPT = """
import json, os, sys
from mpi4py import MPI
extra, env = json.loads(os.environ[f"EXTRA{MPI.COMM_WORLD.rank}"])
os.environ.update(env)
from gpunet.cli import main
sys.exit(main(["train", "--distributed", "--epochs", "2", "--hidden", "8", "--quiet", *extra]))
"""


def _mpiexec():
    import shutil

    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


@pytest.mark.skipif(_mpiexec() is None or importlib.util.find_spec("mpi4py") is None,
                    reason="needs mpi4py and an MPI launcher")
@pytest.mark.parametrize("rank1,reason", [
    # was: no message at all (rank 1 alone failed and stays silent; MPI_Abort ended rank 0)
    ([[], {"GPUNET_BACKEND": "bogus"}], "rank 1: UsageError: GPUNET_BACKEND='bogus' is not a backend"),
    # was: trained on two different data splits, exit 0
    ([["--seed", "3"], {}], "run_info['seed']=0"),
])
def test_a_bad_setting_on_one_rank_ends_every_rank_with_one_message_saying_why(tmp_path, rank1, reason):
    import os
    import subprocess
    import time

    script = tmp_path / "run.py"
    script.write_text(_RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))}
    env.update(EXTRA0=json.dumps([[], {}]), EXTRA1=json.dumps(rank1), OMP_NUM_THREADS="1",
               PYTHONPATH=str(SOURCE))
    started = time.perf_counter()
    r = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", str(script)], capture_output=True,
                       text=True, timeout=120, env=env, cwd=tmp_path)
    assert time.perf_counter() - started < 60
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    messages = [line for line in r.stderr.splitlines() if line.startswith("gpunet: error: ")]
    assert len(messages) == 1 and reason in messages[0], r.stderr
