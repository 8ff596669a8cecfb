"""Model descriptions, model files and gpunet.load_model: a loaded model is the saved one
(class, arguments, dtype, parameters, buffers, scores) on the current backend; Solver
checkpoints give their best or last parameters; anything gpunet cannot rebuild safely is
refused with the way out; predict is the batched test-mode argmax."""

import json
import subprocess
import sys

import numpy as np
import pytest

import gpunet
from gpunet import models, nn
from gpunet._validate import ArgumentError
from gpunet.backend import backend_of
from gpunet.backend.ops import host_dtype
from gpunet.checkpoint import load_npz, save_npz_atomic
from gpunet.serialize import build_model, model_spec
from gpunet.solver import Solver


def _randomize(model, seed=0):
    """Parameters and buffers no constructor would draw (so a rebuilt model must read them)."""
    rng = np.random.default_rng(seed)
    for name, w in model.params.items():
        model.params[name] = gpunet.asarray(rng.standard_normal(w.shape) * 0.3, dtype=host_dtype(w.dtype))
    buffers = {k: gpunet.asarray(rng.uniform(0.5, 2.0, b.shape), dtype=host_dtype(b.dtype))
               for k, b in model.get_buffers().items()}
    if buffers:
        model.set_buffers(buffers)
    return model


def _layers_classifier(dtype="float32"):
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False, dtype=dtype), nn.BatchNorm(3, dtype=dtype),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6, dtype=dtype)),
                        nn.LayerNorm(6, dtype=dtype), nn.LeakyReLU(0.1), nn.Dropout(0.7), nn.Linear(6, 4, dtype=dtype))
    return nn.Classifier(net, reg=0.01, seed=5)


MODELS = {
    "fc-batchnorm-dropout": lambda: models.FullyConnectedNet([9, 7], input_dim=64, num_classes=4, seed=1,
                                                             normalization="batchnorm", dropout_keep_ratio=0.6),
    "fc-layernorm-float64": lambda: models.FullyConnectedNet((5,), input_dim=np.int64(64), num_classes=4,
                                                             normalization="layernorm", dtype=np.float64),
    "two-layer-sigmoid": lambda: models.TwoLayerNet(64, 8, 4, activation="sigmoid", weight_scale="xavier"),
    "cnn": lambda: models.ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=2, filter_size=3, hidden_dim=5,
                                            num_classes=4, dtype="float64"),
    "logistic": lambda: models.LogisticClassifier(64, reg=0.5),
    "classifier-of-layers": _layers_classifier,
}


def _inputs(n=11):
    return np.random.default_rng(7).standard_normal((n, 1, 8, 8)).astype(np.float32)


def _assert_same_model(loaded, model):
    assert type(loaded) is type(model) and model_spec(loaded) == model_spec(model)
    assert loaded.dtype == model.dtype
    for table in ("params", "get_buffers"):
        ours = getattr(model, table)
        ours = ours() if callable(ours) else ours
        theirs = getattr(loaded, table)
        theirs = theirs() if callable(theirs) else theirs
        assert list(theirs) == list(ours)
        for k in ours:
            assert backend_of(theirs[k]) == gpunet.get_backend()
            np.testing.assert_array_equal(gpunet.to_numpy(theirs[k]), gpunet.to_numpy(ours[k]), err_msg=k)


@pytest.mark.parametrize("name", MODELS)
def test_save_then_load_model_gives_the_same_model_on_the_current_backend(name, tmp_path, backend, host):
    with gpunet.use_backend("numpy"):
        model = _randomize(MODELS[name]())
        path = model.save(tmp_path / "model.npz")
        X = _inputs()
        scores = model.loss(X)
    loaded = gpunet.load_model(path)  # on the backend under test
    _assert_same_model(loaded, model)
    np.testing.assert_allclose(host(loaded(gpunet.asarray(X))), scores, rtol=1e-6, atol=1e-6)


def test_the_description_is_plain_json_naming_public_classes():
    spec = model_spec(_layers_classifier())
    assert json.loads(json.dumps(spec)) == spec
    assert spec["class"] == "gpunet.nn.Classifier" and spec["args"]["seed"] is None  # the file has the values
    layers = spec["args"]["net"]["args"]["layers"]
    assert [layer["class"] for layer in layers][:3] == ["gpunet.nn.Conv2d", "gpunet.nn.BatchNorm", "gpunet.nn.ReLU"]
    assert layers[0]["args"]["padding"] == 1 and layers[0]["args"]["bias"] is False
    fc = model_spec(MODELS["fc-layernorm-float64"]())
    assert fc == {"class": "gpunet.models.FullyConnectedNet", "args": {
        "hidden_dims": [5], "input_dim": 64, "num_classes": 4, "dropout_keep_ratio": 1, "normalization": "layernorm",
        "reg": 0.0, "weight_scale": 0.01, "dtype": "float64", "seed": None}}
    rebuilt = build_model(fc)
    assert isinstance(rebuilt, models.FullyConnectedNet) and rebuilt.params["W1"].shape == (64, 5)


def _trained(tmp_path, model, epochs=3, **kwargs):
    ds = gpunet.data.load_digits(seed=0)
    solver = Solver(model, ds.as_solver_data(), update_rule="adam", optim_config={"learning_rate": 3e-3},
                    num_epochs=epochs, batch_size=50, verbose=False, seed=0, restore_best=False,
                    checkpoint_name=str(tmp_path / "run"), **kwargs)
    solver.train()
    return solver, ds


def test_solver_checkpoints_give_the_best_or_the_last_parameters(tmp_path):
    model = models.FullyConnectedNet([16], input_dim=64, num_classes=10, normalization="batchnorm", seed=0)
    solver, ds = _trained(tmp_path, model, epochs=4)
    path = solver.save_checkpoint(tmp_path / "end.npz")
    _, meta = load_npz(path)
    assert meta["model"] == model_spec(model)  # every checkpoint describes its model

    last = gpunet.load_model(path, which="last")
    _assert_same_model(last, model)  # restore_best=False: the model holds the last epoch
    best = gpunet.load_model(path)
    for k, w in solver.best_params.items():
        np.testing.assert_array_equal(best.params[k], w)
    for k, b in solver.best_buffers.items():
        np.testing.assert_array_equal(best.get_buffers()[k], b)
    # the Solver's own evaluation of the best parameters agrees with the loaded model
    model.params.update(solver.best_params)
    model.set_buffers(dict(solver.best_buffers))
    assert solver.check_accuracy(ds.X_test, ds.y_test) == np.mean(best.predict(ds.X_test) == ds.y_test)
    # the file the Solver writes at its best epoch holds the same best parameters
    from_best_file = gpunet.load_model(tmp_path / "run_best.npz")
    for k in solver.best_params:
        np.testing.assert_array_equal(from_best_file.params[k], best.params[k])


def test_a_checkpoint_before_any_best_epoch_offers_the_last_parameters(tmp_path):
    model = models.TwoLayerNet(64, 8, 10, seed=0)
    solver, _ = _trained(tmp_path, model, epochs=0)
    path = solver.save_checkpoint(tmp_path / "start.npz")
    with pytest.raises(ValueError, match="no best parameters yet.*which='last'"):
        gpunet.load_model(path)
    _assert_same_model(gpunet.load_model(path, which="last"), model)


class MyNet(models.FullyConnectedNet):
    """A user's subclass: gpunet describes it but does not import user code to rebuild it."""


class Scale(nn.Module):
    """A user's layer with an argument that is not JSON data."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_user_classes_are_refused_with_the_way_to_load_them(tmp_path):
    model = _randomize(MyNet([6], input_dim=64, num_classes=3))
    path = model.save(tmp_path / "mine.npz")
    with pytest.raises(ValueError, match=r"'test_serialize\.MyNet' is not a gpunet model.*model=MyModel"):
        gpunet.load_model(path)
    _assert_same_model(gpunet.load_model(path, model=MyNet([6], input_dim=64, num_classes=3)), model)

    odd = nn.Classifier(nn.Sequential(nn.Linear(64, 3), Scale(lambda x: 2 * x)))
    assert model_spec(odd) is None
    with pytest.warns(UserWarning, match="cannot be described.*load_model\\(path, model="):
        odd.save(tmp_path / "odd.npz")
    with pytest.raises(ValueError, match="does not describe its model.*model=MyModel"):
        gpunet.load_model(tmp_path / "odd.npz")


def test_models_outside_gpunet_trained_by_a_solver_need_model_argument(tmp_path):
    class Duck:  # the CS231n contract without gpunet's base class
        def __init__(self):
            self.params = {"W": np.zeros((64, 10)), "b": np.zeros(10)}

        def loss(self, X, y=None):
            scores = X.reshape(len(X), -1) @ self.params["W"] + self.params["b"]
            return scores if y is None else (0.0, {k: np.zeros_like(v) for k, v in self.params.items()})

    solver, _ = _trained(tmp_path, Duck(), epochs=1)
    _, meta = load_npz(solver.save_checkpoint(tmp_path / "duck.npz"))
    assert meta["model"] is None
    with pytest.raises(ValueError, match="does not describe its model"):
        gpunet.load_model(tmp_path / "duck.npz")


@pytest.mark.parametrize("name", ["antigravity.Fly", "os.system", "gpunet.__main__.X", "gpunet._validate.ArgumentError",
                                  "gpunet.checkpoint.save_npz_atomic", "gpunet.models.NoSuchNet", "gpunet.nope.X"])
def test_a_file_cannot_make_gpunet_import_or_call_anything_else(tmp_path, name):
    path = save_npz_atomic(tmp_path / "evil.npz", {"param/W": np.zeros(2)},
                           {"kind": "model", "model": {"class": name, "args": {}}})
    code = ("import sys, gpunet\n"
            f"try:\n    gpunet.load_model({str(path)!r})\nexcept ValueError as e:\n    print(e)\n"
            "print(sorted(m for m in ('antigravity', 'gpunet.__main__') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    assert f"the model class {name!r} is not a gpunet model or layer" in out, out
    assert out.strip().endswith("[]"), out  # nothing outside gpunet was imported, no CLI ran


@pytest.mark.parametrize("spec,message", [
    ({"class": "gpunet.nn.Linear"}, "a model description is"),
    ({"class": "gpunet.nn.Linear", "args": {"in_features": 3, "out_features": 2, "colour": 1}},
     r"takes no arguments \['colour'\]"),
    ({"class": "gpunet.nn.Linear", "args": {"in_features": -3, "out_features": 2}},
     "cannot rebuild gpunet.nn.Linear from its description: Linear: in_features must be an int >= 1"),
])
def test_malformed_descriptions_are_clear_errors(tmp_path, spec, message):
    path = save_npz_atomic(tmp_path / "bad.npz", {}, {"kind": "model", "model": spec})
    with pytest.raises(ValueError, match=message):
        gpunet.load_model(path)


def test_files_that_hold_no_fitting_model_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gpunet.load_model(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        gpunet.load_model(tmp_path / "text.npz")
    save_npz_atomic(tmp_path / "other.npz", {"x": np.zeros(2)}, {"kind": "history"})
    with pytest.raises(ValueError, match="holds no model"):
        gpunet.load_model(tmp_path / "other.npz")
    with pytest.raises(ArgumentError, match="which must be one of 'best', 'last'"):
        gpunet.load_model(tmp_path / "other.npz", which="first")

    model = _randomize(models.TwoLayerNet(64, 8, 4))
    path = model.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"holds parameters \['W1', 'W2', 'b1', 'b2'\], the FullyConnectedNet has"):
        gpunet.load_model(path, model=models.FullyConnectedNet([8, 8], input_dim=64, num_classes=4))
    small = models.TwoLayerNet(64, 5, 4)
    before = {k: v.copy() for k, v in small.params.items()}
    with pytest.raises(ValueError, match=r"'W1' has shape \(64, 8\).*has \(64, 5\).*sizes and dtype"):
        gpunet.load_model(path, model=small)
    for k, w in before.items():  # nothing was changed
        np.testing.assert_array_equal(small.params[k], w)
    with pytest.raises(ValueError, match="dtype float32.*float64"):
        gpunet.load_model(path, model=models.TwoLayerNet(64, 8, 4, dtype=np.float64))


# --- predict and calling a model -------------------------------------------------------------


@pytest.mark.parametrize("name", ["fc-batchnorm-dropout", "cnn", "classifier-of-layers", "logistic"])
@pytest.mark.parametrize("batch_size", [1, 4, 11, 1000])
def test_predict_is_the_test_mode_argmax_per_sample(name, batch_size, backend, put, host):
    model = _randomize(MODELS[name]())
    X = _inputs()
    labels = model.predict(put(X), batch_size=batch_size)
    assert backend_of(labels) == backend and labels.dtype == gpunet.get_array_module(labels).int64
    # reference: one sample at a time (so batch statistics or dropout would show), NumPy argmax
    expected = [int(np.argmax(host(model.loss(put(X[i:i + 1]))))) for i in range(len(X))]
    assert host(labels).tolist() == expected
    assert host(model.predict(put(X), batch_size=batch_size)).tolist() == expected  # no state changed


def test_predict_returns_labels_where_the_data_lives(backend, host):
    model = _randomize(MODELS["cnn"]())  # on the backend under test
    X = _inputs()
    labels = model.predict(X)  # host data
    assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (11,)
    assert labels.tolist() == host(model.predict(gpunet.asarray(X))).tolist()
    empty = model.predict(X[:0])
    assert isinstance(empty, np.ndarray) and empty.shape == (0,) and empty.dtype == np.int64


def test_predict_and_call_argument_errors():
    model = models.TwoLayerNet(4, 3, 2)
    with pytest.raises(ArgumentError, match="TwoLayerNet.predict: batch_size must be an int >= 1, got 0"):
        model.predict(np.zeros((2, 4), np.float32), batch_size=0)
    with pytest.raises(ArgumentError, match=r"TwoLayerNet.predict: X must be an array of samples \(N, \.\.\.\)"):
        model.predict(np.float32(1.0))
    with pytest.raises(TypeError, match="convert it with gpunet.asarray"):
        model.predict([[0.0] * 4])
    with pytest.raises(ValueError, match="w must have shape"):
        model.predict(np.zeros((2, 5), np.float32))


def test_calling_a_model_gives_its_test_mode_scores():
    model = _randomize(MODELS["fc-batchnorm-dropout"]())
    X = _inputs(6)
    np.testing.assert_array_equal(model(X), model.loss(X))
    np.testing.assert_allclose(model(X)[:1], model(X[:1]), rtol=1e-6)  # running statistics, no dropout
    net_model = _randomize(_layers_classifier())
    net_model.net.train()
    np.testing.assert_array_equal(net_model(X), net_model.loss(X))
    np.testing.assert_allclose(net_model(X)[:2], net_model(X[:2]), rtol=1e-6)
    assert net_model.net.training  # the layers' mode is left as it was
