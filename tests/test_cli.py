"""The gpunet command: trains on the shipped data, prints the test accuracy; every bad
command line ends in one line on stderr (``gpunet: error: ...``, in flag terms) and exit
status 2 for a usage error or 1 for a failure, before any training; Ctrl-C stops cleanly
with the command that resumes; resume keeps the run's flags unless new ones are given."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpunet
import gpunet.data
from gpunet._install import clone_install
from gpunet.backend import cupy_status
from gpunet.backend.switch import _reset_for_tests
from gpunet.checkpoint import load_npz
from gpunet.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_backend_choice():
    """`gpunet train` sets the process's backend; give every test a fresh choice."""
    yield
    _reset_for_tests()


def cli(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``gpunet ARGV`` run in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _accuracy(out: str) -> float:
    m = re.search(r"^test accuracy: (\d\.\d{4})$", out, re.M)
    assert m, out
    return float(m.group(1))


def test_train_digits_mlp_learns(capsys):
    code, out, _ = cli(["train", "--epochs", "3", "--quiet", "--backend", "numpy"], capsys)
    assert code == 0
    assert out.count("\n") == 1  # --quiet: only the result line
    assert _accuracy(out) > 0.6  # 10 classes: chance is 0.1


def test_train_reports_backend_data_model_and_epochs(capsys):
    code, out, _ = cli(["train", "--epochs", "2", "--model", "cnn", "--hidden", "16",
                        "--filters", "4"], capsys)
    assert code == 0
    assert re.search(r"^backend: numpy on CPU .*\(auto: ", out, re.M)  # why auto chose NumPy
    assert "data: digits from " in out and "digits.csv.gz" in out  # where the files are
    assert "ThreeLayerConvNet" in out
    assert len(re.findall(r"^epoch [12]/2  .* val_acc \d\.\d{4}", out, re.M)) == 2
    _accuracy(out)


def test_breast_cancer_logistic(capsys):
    code, out, _ = cli(["train", "--data", "breast-cancer", "--model", "logistic", "--epochs",
                        "10", "--lr", "1e-2", "--quiet"], capsys)
    assert code == 0 and _accuracy(out) > 0.9


def test_help_shows_defaults_and_version_and_bare_gpunet(capsys):
    code, out, _ = cli(["train", "-h"], capsys)
    assert code == 0 and "(default: adam)" in out and "(default: 0)" in out
    assert "per dataset" in out
    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"gpunet {gpunet.__version__}"
    code, out, _ = cli([], capsys)
    assert code == 0 and "usage: gpunet" in out and "train" in out and "info" in out


# --- checkpoints and resume ------------------------------------------------------------------


def test_checkpoint_files_and_resume_with_the_runs_flags(tmp_path, capsys):
    prefix = tmp_path / "run.npz"  # the obvious thing: prefix "run"
    code, out, _ = cli(["train", "--epochs", "2", "--hidden", "32", "--lr", "0.002",
                        "--batch-size", "16", "--checkpoint", prefix], capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_best.npz", "run_last.npz"]
    run = load_npz(tmp_path / "run_last.npz")[1]["run"]
    ds = gpunet.data.load_digits(seed=0, val=0.1, test=0.2, flatten=True)
    assert {k: run[k] for k in ("data", "data_path", "seed", "val", "test", "normalize",
                                "flatten", "sample_shape", "model", "eval_batch_size")} == {
        "data": "digits", "data_path": None, "seed": 0, "val": 0.1, "test": 0.2,
        "normalize": True, "flatten": True, "sample_shape": [64], "model": "mlp",
        "eval_batch_size": 100}
    np.testing.assert_allclose(run["mean"], ds.mean) and np.testing.assert_allclose(run["std"],
                                                                                    ds.std)
    assert run["args"]["hidden"] == [32] and run["args"]["lr"] == 0.002
    # Only --resume and a longer --epochs: model, lr and batch size come from the checkpoint.
    code, out, _ = cli(["train", "--resume", tmp_path / "run_last.npz", "--epochs", "3"],
                       capsys)
    assert code == 0, out
    assert (f"resumed from epoch 2 of {tmp_path / 'run_last.npz'} (iteration 158); changed: "
            "--epochs 2 -> 3") in out
    assert "epochs 3-3 of 79 steps (batch size 16), adam lr 0.002" in out
    assert load_npz(tmp_path / "run_last.npz")[1]["epoch"] == 3  # the same prefix goes on
    _accuracy(out)


def test_resume_with_a_new_learning_rate_reports_it(tmp_path, capsys):
    cli(["train", "--epochs", "1", "--checkpoint", tmp_path / "a", "--quiet"], capsys)
    code, out, _ = cli(["train", "--resume", tmp_path / "a_last.npz", "--epochs", "2",
                        "--lr", "0.5"], capsys)
    assert code == 0
    assert "changed: --epochs 1 -> 2, --lr 0.001 -> 0.5" in out
    assert load_npz(tmp_path / "a_last.npz")[1]["base_lr"]["W1"] == 0.5


def test_keep_every(tmp_path, capsys):
    code, _, _ = cli(["train", "--epochs", "4", "--checkpoint", tmp_path / "r", "--keep-every",
                      "2", "--quiet"], capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r_best.npz", "r_epoch_2.npz", "r_epoch_4.npz", "r_last.npz"]


def test_batchnorm_with_a_last_batch_of_one(capsys):
    """1258 digits training rows in batches of 3 leave one: merged, not a crash."""
    code, out, err = cli(["train", "--normalization", "batchnorm", "--batch-size", "3",
                          "--epochs", "1"], capsys)
    assert code == 0, err
    assert "of 419 steps (batch size 3)" in out
    code, out, err = cli(["train", "--normalization", "batchnorm", "--batch-size", "3",
                          "--epochs", "1", "--drop-last", "--quiet"], capsys)
    assert code == 0, err


def test_plot_path_is_the_file_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, _ = cli(["train", "--epochs", "2", "--plot", tmp_path / "noext"], capsys)
    assert code == 0
    assert f"curves written to {tmp_path / 'noext.png'}" in out
    assert (tmp_path / "noext.png").read_bytes()[:4] == b"\x89PNG"


# --- bad command lines: one line, early, the right exit status --------------------------------


def _checkpoint(tmp_path, capsys, *flags):
    cli(["train", "--epochs", "2", "--quiet", "--checkpoint", tmp_path / "ck", *flags], capsys)
    return tmp_path / "ck_last.npz"


BAD = [  # (argv, exit status, text in the message); {tmp} is a fresh directory
    (["--lr", "nan"], 2, "argument --lr: the value must be a finite number > 0.0, got nan"),
    (["--lr", "inf"], 2, "argument --lr: the value must be a finite number"),
    (["--lr", "0"], 2, "argument --lr"),
    (["--lr", "fast"], 2, "argument --lr: expected a number, got 'fast'"),
    (["--reg", "-1"], 2, "argument --reg: the value must be a finite number >= 0.0"),
    (["--reg", "nan"], 2, "argument --reg"),
    (["--seed", "-1"], 2, "argument --seed: the value must be an int >= 0, got -1"),
    (["--seed", "1.5"], 2, "argument --seed: expected an int"),
    (["--lr-decay", "inf"], 2, "argument --lr-decay"),
    (["--epochs", "-1"], 2, "argument --epochs"),
    (["--batch-size", "0"], 2, "argument --batch-size"),
    (["--hidden", "x"], 2, "argument --hidden: expected an int, got 'x'"),
    (["--hidden", "0"], 2, "argument --hidden"),
    (["--dropout", "1.5"], 2, "argument --dropout"),
    (["--dropout", "0"], 2, "argument --dropout"),
    (["--patience", "0"], 2, "argument --patience"),
    (["--optimizer", "lbfgs"], 2, "invalid choice: 'lbfgs'"),
    (["--data", "imagenet"], 2, "invalid choice: 'imagenet'"),
    (["--bogus-flag"], 2, "unrecognized arguments: --bogus-flag"),
    (["--model", "logistic"], 2, "--model logistic needs 2 classes; digits has 10"),
    (["--model", "cnn", "--data", "breast-cancer"], 2, "--model cnn needs images"),
    (["--model", "cnn", "--filter-size", "4"], 2, "--filter-size must be odd"),
    (["--data", "digits", "--data-path", "{tmp}"], 2, "--data-path is for fashion-mnist"),
    (["--data", "mnist", "--data-path", "{tmp}/none"], 2, "--data mnist: MNIST not found; "
                                                          "looked in: {tmp}/none (the path"),
    (["--keep-every", "2"], 2, "--keep-every needs --checkpoint PREFIX"),
    (["--checkpoint", "/proc/gpunet-test/run"], 2, "--checkpoint /proc/gpunet-test/run: cannot "
                                                   "write in /proc/gpunet-test"),
    (["--checkpoint", "{tmp}/file/run"], 2, "cannot write in"),
    (["--checkpoint", "{tmp}"], 2, "is a directory; give a file prefix"),
    (["--plot", "{tmp}/missing/curves.png"], 2, "the directory {tmp}/missing does not exist"),
    (["--plot", "{tmp}/curves.xyz"], 2, "cannot write '.xyz' files"),
    (["--resume", "{tmp}/missing.npz"], 2, "--resume {tmp}/missing.npz: the file does not exist"),
    (["--resume", "{tmp}/garbage.npz"], 1, "is not a readable .npz checkpoint"),
    (["--resume", "{ck}", "--hidden", "64"], 2, "--hidden 64: the checkpoint's run used "
                                                "--hidden 128"),
    (["--resume", "{ck}", "--epochs", "1"], 2, "--epochs counts all epochs: pass --epochs 7"),
    (["--resume", "{ck}"], 2, "the checkpoint's run had --epochs 2"),
    (["--resume", "{python_ck}"], 1, "param/W1"),
    (["--optimizer", "sgd", "--lr", "1e12", "--epochs", "2"], 1, "loss is"),
    pytest.param(["--backend", "cupy"], 2, "--backend cupy: backend 'cupy' is not available",
                 marks=pytest.mark.skipif(cupy_status()[0] is not None,
                                          reason="a CUDA device is usable here")),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("argv,status,message", BAD)
def test_bad_command_lines_end_in_one_line(argv, status, message, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    subs = {"{tmp}": str(tmp_path)}
    if any("{ck}" in a for a in argv):
        subs["{ck}"] = str(_checkpoint(tmp_path, capsys))
    if any("{python_ck}" in a for a in argv):  # a model of other sizes
        from gpunet.models import FullyConnectedNet
        from gpunet.solver import Solver

        r = np.random.default_rng(0)
        X, y = r.normal(size=(40, 64)).astype(np.float32), r.integers(0, 10, 40)
        s = Solver(FullyConnectedNet([7], input_dim=64, num_classes=10), dict(
            X_train=X, y_train=y, X_val=X, y_val=y), num_epochs=1, verbose=False)
        s.train()
        s.num_epochs = 5  # more to train: the model is what does not fit
        subs["{python_ck}"] = str(s.save_checkpoint(tmp_path / "py.npz"))
    for k, v in subs.items():
        argv = [a.replace(k, v) for a in argv]
        message = message.replace(k, v)
    code, out, err = cli(["train", *argv], capsys)
    assert code == status, err
    assert err.startswith("gpunet: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err and "usage:" not in err
    assert "epoch 1/" not in out or status == 1  # usage errors come before any training


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_debug_shows_the_traceback(capsys):
    with pytest.raises(gpunet.solver.NonFiniteLossError):
        main(["train", "--optimizer", "sgd", "--lr", "1e12", "--epochs", "2", "--quiet",
              "--debug"])


def _run(argv, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "gpunet", *map(str, argv)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **kw)


def test_a_bad_gpunet_backend_variable_is_one_line_and_an_explicit_backend_wins():
    r = _run(["train", "--epochs", "1", "--quiet"], env={"GPUNET_BACKEND": "bogus"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("gpunet: error: GPUNET_BACKEND='bogus' is not a backend")
    r = _run(["train", "--epochs", "1", "--quiet", "--backend", "numpy"],
             env={"GPUNET_BACKEND": "bogus"})
    assert r.returncode == 0, r.stderr


def test_info_and_module_entry_point():
    r = _run(["info"])
    assert r.returncode == 0, r.stderr
    assert "numpy " in r.stdout and "BLAS:" in r.stdout and "CuPy" in r.stdout


# --- Ctrl-C -----------------------------------------------------------------------------------


def _interrupt_after_the_first_epoch(launcher, tmp_path, *flags):
    """Start ``launcher + gpunet train`` with checkpoints in ``tmp_path``, send SIGINT once
    the first epoch's checkpoint exists; ``(exit status, stdout, stderr, that file)``."""
    proc = subprocess.Popen(
        [*launcher, "-m", "gpunet", "train", "--epochs", "300", "--batch-size", "8",
         "--checkpoint", str(tmp_path / "run"), *flags], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = tmp_path / "run_last.npz"
    deadline = time.monotonic() + 100
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, last


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    """SIGINT after the first epoch's checkpoint: exit 130, one message with the exact
    --resume command, no traceback; that command continues the run."""
    code, out, err, last = _interrupt_after_the_first_epoch([sys.executable], tmp_path)
    assert code == 130, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("gpunet: interrupted: training interrupted in epoch ")
    assert err.rstrip().endswith(f"continue with: gpunet train --resume {last}")
    finished = load_npz(last)[1]["epoch"]
    assert finished >= 1
    r = _run(["train", "--resume", last, "--epochs", finished + 1])
    assert r.returncode == 0, r.stderr
    assert f"resumed from epoch {finished} of {last}" in r.stdout


@pytest.mark.skipif(shutil.which("mpiexec") is None or importlib.util.find_spec("mpi4py") is None,
                    reason=f"needs mpi4py and an MPI launcher: `{clone_install('mpi')} mpich`")
def test_ctrl_c_under_mpiexec_stops_every_rank_with_one_message(tmp_path):
    """mpiexec forwards SIGINT to every rank; the ranks agree to stop at the same step, rank
    0 alone says so, and MPI ends without an MPI_Abort."""
    code, out, err, last = _interrupt_after_the_first_epoch(
        ["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py"], tmp_path, "--distributed")
    assert code == 130, err
    assert err.count("gpunet: interrupted: ") == 1 and err.count("\n") == 1, err
    assert "Traceback" not in err and "Abort" not in err
    assert err.rstrip().endswith("continue with: mpiexec -n 2 python -m mpi4py -m gpunet train "
                                 f"--distributed --resume {last}")
    assert out.count("test accuracy") == 0
