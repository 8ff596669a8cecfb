"""The gpunet command: trains on the shipped data, prints the test accuracy, rejects bad
options the argparse way, and reports the machine."""

import re
import subprocess
import sys

import pytest

from gpunet.backend import cupy_status
from gpunet.cli import main


def _accuracy(out: str) -> float:
    m = re.search(r"^test accuracy: (\d\.\d{4})$", out, re.M)
    assert m, out
    return float(m.group(1))


def test_train_digits_mlp_learns(capsys):
    assert main(["train", "--epochs", "3", "--quiet", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # --quiet: only the result line
    assert _accuracy(out) > 0.6  # 10 classes: chance is 0.1


def test_train_reports_backend_data_and_model(capsys):
    main(["train", "--epochs", "1", "--backend", "numpy", "--model", "cnn", "--hidden", "16", "--filters", "4"])
    out = capsys.readouterr().out
    assert "backend: numpy on CPU" in out and "data: digits" in out and "ThreeLayerConvNet" in out
    _accuracy(out)


def test_breast_cancer_logistic(capsys):
    main(["train", "--data", "breast-cancer", "--model", "logistic", "--epochs", "10", "--lr", "1e-2", "--quiet"])
    assert _accuracy(capsys.readouterr().out) > 0.9


def test_checkpoint_and_resume(tmp_path, capsys):
    prefix = str(tmp_path / "run")
    main(["train", "--epochs", "2", "--quiet", "--checkpoint", prefix])
    assert (tmp_path / "run_epoch_2.npz").exists()
    main(["train", "--epochs", "3", "--quiet", "--resume", str(tmp_path / "run_epoch_2.npz")])
    _accuracy(capsys.readouterr().out)


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "-1"], "must be >= 0"),
    (["train", "--lr", "0"], "must be > 0"),
    (["train", "--hidden", "x"], "expected a int"),
    (["train", "--dropout", "1.5"], "keep probability must be in (0, 1]"),
    (["train", "--model", "logistic"], "needs 2 classes; digits has 10"),
    (["train", "--model", "cnn", "--data", "breast-cancer"], "needs images"),
    (["train", "--data", "fashion-mnist", "--data-path", "/nonexistent/dir"], "/nonexistent/dir"),
    (["train", "--optimizer", "lbfgs"], "invalid choice"),
    pytest.param(["train", "--backend", "cupy"], "backend 'cupy' is not available",
                 marks=pytest.mark.skipif(cupy_status()[0] is not None, reason="a CUDA device is usable here")),
])
def test_bad_options_get_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: gpunet" in err and message in err


def test_info_and_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "gpunet", "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "numpy " in r.stdout and "BLAS:" in r.stdout and "CuPy" in r.stdout
