"""gpunet eval and gpunet predict: eval prints the test accuracy training printed (checked
against the training command and the Solver's own evaluation), predict applies the
recorded normalisation to raw samples (checked against the normalised test split), and
every user mistake is one clear error."""

import re

import numpy as np
import pytest

import gpunet
from gpunet import models
from gpunet.checkpoint import load_npz, save_npz_atomic
from gpunet.cli import main
from gpunet.cli.train import run_record
from gpunet.solver import Solver

BC = {"seed": 3, "val": 0.2, "test": 0.25}  # breast-cancer, not the loader's defaults


def _accuracy_line(out: str) -> str:
    m = re.search(r"^test accuracy: \d\.\d{4}$", out, re.MULTILINE)
    assert m, out
    return m.group(0)


def _with_run(path, run):
    """Rewrite the checkpoint at ``path`` with ``meta["run"] = run`` (what the training
    command records)."""
    arrays, meta = load_npz(path)
    save_npz_atomic(path, arrays, {**meta, "run": run})
    return path


def _fails(argv, message, capsys):
    """The command fails with ``message``: as an exception (no common handler yet) or as an
    exit code 1/2 with the message on stderr."""
    try:
        code, text = main(argv), capsys.readouterr().err
    except SystemExit as exc:
        code, text = exc.code, capsys.readouterr().err
    except (ValueError, TypeError, OSError) as exc:
        code, text = 1, str(exc)
    assert code in (1, 2) and message in text, (code, text)


def test_eval_prints_what_training_printed(tmp_path, capsys):
    prefix = str(tmp_path / "run")
    assert main(["train", "--epochs", "2", "--quiet", "--backend", "numpy", "--checkpoint", prefix]) == 0
    trained = _accuracy_line(capsys.readouterr().out)
    assert main(["eval", f"{prefix}_best.npz", "--data", "digits", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert _accuracy_line(out) == trained
    assert "FullyConnectedNet" in out and "best parameters" in out


@pytest.fixture(scope="module")
def breast_cancer_run(tmp_path_factory):
    """A Solver run on breast-cancer with a non-default split; its checkpoint records the
    run; the Solver's accuracies of the best and the last parameters as references."""
    ds = gpunet.data.load_breast_cancer(**BC)
    model = models.FullyConnectedNet([16], input_dim=30, num_classes=2, normalization="batchnorm", seed=0)
    solver = Solver(model, ds.as_solver_data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
                    num_epochs=8, batch_size=40, verbose=False, seed=0, restore_best=False)
    solver.train()
    last = solver.check_accuracy(ds.X_test, ds.y_test)
    path = solver.save_checkpoint(tmp_path_factory.mktemp("bc") / "bc.npz")
    model.params.update(solver.best_params)
    model.set_buffers(dict(solver.best_buffers))
    best = solver.check_accuracy(ds.X_test, ds.y_test)
    assert f"{best:.4f}" != f"{last:.4f}"  # so eval must take the right ones
    run = run_record(ds, model="mlp", eval_batch_size=solver.eval_batch_size, **BC)
    return _with_run(path, run), {"best": best, "last": last}, ds


@pytest.mark.parametrize("which", ["best", "last"])
def test_eval_reloads_the_recorded_split(breast_cancer_run, which, capsys):
    path, expected, _ = breast_cancer_run
    assert main(["eval", str(path), "--which", which]) == 0
    out = capsys.readouterr().out
    assert _accuracy_line(out) == f"test accuracy: {expected[which]:.4f}"
    assert "data: breast-cancer: 142 test samples" in out  # 25% of 569: the recorded fraction


def test_predict_normalises_raw_samples_as_training_did(breast_cancer_run, tmp_path, capsys):
    path, _, ds = breast_cancer_run
    raw = gpunet.data.load_breast_cancer(normalize=False, **BC).X_test.astype(np.float64)
    np.save(tmp_path / "raw.npy", raw)
    assert main(["predict", str(path), str(tmp_path / "raw.npy"), "-o", str(tmp_path / "labels")]) == 0
    assert f"wrote 142 labels to {tmp_path / 'labels'}" in capsys.readouterr().out
    labels = np.load(tmp_path / "labels")  # exactly the path given, no .npy appended
    assert labels.dtype == np.int64 and labels.shape == (142,)
    expected = gpunet.load_model(path).predict(ds.X_test)  # the normalised split
    np.testing.assert_array_equal(labels, expected)


def test_predict_takes_images_flat_or_shaped(tmp_path, capsys):
    ds = gpunet.data.load_digits()
    model = models.ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=3, filter_size=3, hidden_dim=10, num_classes=10,
                                     weight_scale="he", seed=0)
    path = _with_run(model.save(tmp_path / "cnn.npz"), run_record(ds, model="cnn"))
    expected = model.predict(ds.X_test)
    raw = gpunet.data.load_digits(normalize=False).X_test
    for shape in [raw.shape, (len(raw), 64)]:
        np.save(tmp_path / "in.npy", raw.reshape(shape))
        assert main(["predict", str(path), str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy")]) == 0
        np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    capsys.readouterr()


def test_predict_without_a_record_uses_the_input_as_given_and_says_so(tmp_path, capsys):
    model = models.TwoLayerNet(4, 5, 3, seed=0)
    path = model.save(tmp_path / "m.npz")
    X = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert "INPUT is used as given" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.argmax(model.loss(X), axis=1))


def test_eval_and_predict_errors(breast_cancer_run, tmp_path, capsys):
    path, _, _ = breast_cancer_run
    digits_model = models.TwoLayerNet(64, 5, 10, seed=0).save(tmp_path / "digits.npz")
    (tmp_path / "notes.npz").write_text("not a checkpoint")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 10), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.savez(tmp_path / "archive.npz", x=np.zeros((2, 30)))
    out = str(tmp_path / "o.npy")
    cases = [
        (["eval", str(tmp_path / "missing.npz")], "missing.npz"),
        (["eval", str(tmp_path / "notes.npz")], "not a readable"),
        (["eval", str(digits_model)], ("does not record its dataset (it was written without run information); "
                                       "name it with --data NAME")),
        (["eval", str(digits_model), "--data", "breast-cancer"],
         "the model does not take --data breast-cancer samples of shape (30,)"),
        (["eval", str(path), "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["eval", str(path), "--which", "first"], "invalid choice: 'first'"),
        (["predict", str(path), str(tmp_path / "wrong.npy"), "-o", out],
         "holds samples of shape (10,) (array (3, 10)); the model was trained on samples of shape (30,)"),
        (["predict", str(path), str(tmp_path / "nothing.npy"), "-o", out], "nothing.npy"),
        (["predict", str(path), str(tmp_path / "objects.npy"), "-o", out], "not a numeric .npy array"),
        (["predict", str(path), str(tmp_path / "text.npy"), "-o", out], "holds a <U1 array of shape (2,)"),
        (["predict", str(path), str(tmp_path / "archive.npz"), "-o", out], "is an .npz archive"),
        (["predict", str(digits_model), str(tmp_path / "wrong.npy"), "-o", out],
         "the model does not take the samples of"),
        (["predict", str(path), str(tmp_path / "wrong.npy")], "the following arguments are required: -o/--output"),
    ]
    for argv, message in cases:
        _fails(argv, message, capsys)
    assert not (tmp_path / "o.npy").exists()
