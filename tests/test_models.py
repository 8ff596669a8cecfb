"""Models and nn layer objects: numeric gradients of every parameter on every backend,
regularisation, buffers, modes, moving between backends, the checked params table and
constructor errors. (CS231n's published TwoLayerNet values: tests/test_compat_cs231n.py.)"""

import numpy as np
import pytest
from tolerances import GRAD_REL_ERROR, model_grad_error

import gpunet
from gpunet import nn
from gpunet.gradcheck import eval_numerical_gradient
from gpunet.models import FullyConnectedNet, LogisticClassifier, ThreeLayerConvNet, TwoLayerNet


def _fixed_dropout(model):
    if hasattr(model, "dropout_param"):
        model.dropout_param["seed"] = 123  # the same mask on every call, as in CS231n
    return model


def _classifier():
    # first filters rng=2: with rng=0 an entry of 9e-4 in 0.W sits at the numeric gradient's
    # round-off floor in this deep net (loss 5.2: ~1e-10 absolute) and meets 1e-7 by chance only
    net = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=1, pad=(1, 0), rng=2, dtype="float64"), nn.BatchNorm(3, dtype="float64"),
        nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.Conv2d(3, 2, 1, rng=5, dtype="float64"), nn.MaxPool2d((1, 2)),
        nn.Flatten(), nn.Linear(4, 6, rng=1, dtype="float64"), nn.LayerNorm(6, dtype="float64"), nn.Sigmoid(),
        nn.Linear(6, 5, init="xavier", rng=2, dtype="float64"), nn.BatchNorm(5, dtype="float64"), nn.Tanh(),
        nn.Linear(5, 3, init=0.5, rng=3, dtype="float64"))
    return nn.Classifier(net, reg=0.3, seed=0)


MODELS = {
    "two_layer_relu": (lambda: TwoLayerNet(6, 7, 4, weight_scale=0.5, reg=0.2, dtype=np.float64, seed=0), (5, 6), 4),
    "two_layer_sigmoid": (lambda: TwoLayerNet(6, 7, 4, weight_scale=0.5, activation="sigmoid", reg=0.2,
                                              dtype=np.float64, seed=0), (5, 6), 4),
    "fc_plain": (lambda: FullyConnectedNet([6, 5], input_dim=8, num_classes=4, reg=0.1, weight_scale=0.5,
                                           dtype=np.float64, seed=0), (5, 2, 4), 4),
    "fc_batchnorm_dropout": (lambda: FullyConnectedNet([6, 5], input_dim=8, num_classes=4, normalization="batchnorm",
                                                       dropout_keep_ratio=0.7, reg=0.1, weight_scale=0.5,
                                                       dtype=np.float64, seed=0), (6, 8), 4),
    "fc_layernorm": (lambda: FullyConnectedNet([6, 5], input_dim=8, num_classes=4, normalization="layernorm",
                                               reg=0.1, weight_scale=0.5, dtype=np.float64, seed=0), (6, 8), 4),
    "three_layer_conv": (lambda: ThreeLayerConvNet((2, 6, 4), num_filters=3, filter_size=3, hidden_dim=5,
                                                   num_classes=4, weight_scale=0.3, reg=0.05, dtype=np.float64,
                                                   seed=0), (3, 2, 6, 4), 4),
    "logistic": (lambda: LogisticClassifier(5, weight_scale=0.5, reg=0.1, dtype=np.float64, seed=0), (7, 5), 2),
    "nn_classifier": (_classifier, (4, 2, 4, 5), 3),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_model_gradients_match_numeric(name, backend, put, host):
    make, x_shape, classes = MODELS[name]
    model = _fixed_dropout(make())
    # seeds 1-5 put a ThreeLayerConvNet hidden ReLU input at -5.8e-5: a numeric step crosses the kink
    rng = np.random.default_rng(7)
    X, y = put(rng.standard_normal(x_shape)), put(rng.integers(0, classes, x_shape[0]))
    state = model.rng.bit_generator.state

    def f(_):
        model.rng.bit_generator.state = state
        return model.loss(X, y)[0]

    model.rng.bit_generator.state = state
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for k in model.params:
        numeric = eval_numerical_gradient(f, model.params[k], verbose=False)
        if np.abs(numeric).max() < 1e-8:  # a bias right before a batchnorm: no effect at all
            assert np.abs(host(grads[k])).max() < 1e-10
            continue
        err = model_grad_error(grads[k], numeric)
        assert err <= GRAD_REL_ERROR, f"{name}: {k}: rel_error {err:.2e}"


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_shape_and_test_mode(name, put, host):
    make, x_shape, classes = MODELS[name]
    model = make()
    X = put(np.random.default_rng(2).standard_normal(x_shape))
    s1, s2 = host(model.loss(X)), host(model.loss(X))
    assert s1.shape == (x_shape[0], classes)
    np.testing.assert_array_equal(s1, s2)  # test mode: no dropout, running statistics, nothing updated


def test_regularisation_is_half_reg_sum_of_squared_weights(host):
    model = FullyConnectedNet([5], input_dim=4, num_classes=3, weight_scale=0.3, dtype=np.float64, seed=1)
    X, y = np.random.default_rng(0).standard_normal((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    base, _ = model.loss(X, y)
    model.reg = 0.7
    regd, _ = model.loss(X, y)
    expected = 0.5 * 0.7 * sum(np.sum(model.params[k] ** 2) for k in ("W1", "W2"))
    assert float(regd) - float(base) == pytest.approx(expected, rel=1e-12)


def test_same_seed_same_weights_on_every_backend(host):
    a = FullyConnectedNet([7], input_dim=5, seed=42)
    with gpunet.use_backend("strict"):
        b = FullyConnectedNet([7], input_dim=5, seed=42)
    for k in a.params:
        np.testing.assert_array_equal(host(a.params[k]), host(b.params[k]))
    assert host(a.params["W1"]).dtype == np.float32


def test_model_to_moves_params_and_buffers(host):
    model = FullyConnectedNet([4], input_dim=3, normalization="batchnorm", seed=0)
    model.to("strict")
    assert all(gpunet.backend.backend_of(v) == "strict" for v in model.params.values())
    assert all(gpunet.backend.backend_of(v) == "strict" for v in model.get_buffers().values())
    with gpunet.use_backend("strict"):
        X, y = gpunet.asarray(np.ones((2, 3)), "float32"), gpunet.asarray(np.array([0, 1]))
    loss, grads = model.loss(X, y)
    model.to("numpy")
    assert isinstance(model.params["W1"], np.ndarray)


def test_batchnorm_buffers_round_trip():
    model = FullyConnectedNet([4, 3], input_dim=3, normalization="batchnorm", seed=0)
    model.loss(np.random.default_rng(0).standard_normal((5, 3)), np.array([0, 1, 0, 1, 0]))
    buffers = {k: v.copy() for k, v in model.get_buffers().items()}
    assert set(buffers) == {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"}
    fresh = FullyConnectedNet([4, 3], input_dim=3, normalization="batchnorm", seed=0)
    fresh.set_buffers(buffers)
    for k, v in fresh.get_buffers().items():
        np.testing.assert_array_equal(v, buffers[k])
    with pytest.raises(ValueError, match="no buffers"):
        fresh.set_buffers({"bn9.running_mean": buffers["bn1.running_mean"]})


def test_param_dict_writes_through_to_the_layer():
    layer = nn.Linear(3, 2, rng=0)
    model = nn.Classifier(nn.Sequential(layer))
    new_w = np.zeros((3, 2), dtype=np.float32)
    model.params["0.W"] = new_w
    assert layer.W is new_w
    with pytest.raises(ValueError, match=r"params: 0.W must have shape \(3, 2\)"):
        model.params["0.W"] = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(KeyError, match="no parameter named"):
        model.params["1.W"] = new_w


@pytest.mark.parametrize("value,message", [
    (np.zeros((3, 2), np.float64),
     r"params: 0.W must have dtype float32 \(the dtype of the array it replaces\), got float64"),
    (np.zeros((3, 2), np.int32), "0.W must be a real floating array"),
    ([[0.0, 0.0]] * 3, "0.W must be a real floating array .* got list"),
    (0.0, "0.W must be a real floating array"),
])
def test_param_dict_refuses_another_dtype_or_a_non_array_and_keeps_the_model(value, message):
    layer = nn.Linear(3, 2, rng=0)
    model = nn.Classifier(nn.Sequential(layer))
    before = layer.W
    with pytest.raises(TypeError, match=message):
        model.params["0.W"] = value
    assert layer.W is before and model.params["0.W"].dtype == np.float32


def test_param_dict_owner_names_the_module_and_attribute():
    lin, conv, bn = nn.Linear(8, 2, rng=0), nn.Conv2d(1, 2, 3, pad=1, rng=0), nn.BatchNorm(2)
    net = nn.Sequential(conv, bn, nn.MaxPool2d(2), nn.Flatten(), lin)
    assert net.params.owner("4.W") == (lin, "W") and net.params.owner("1.gamma") == (bn, "gamma")
    assert net.buffers.owner("1.running_var") == (bn, "running_var")
    with pytest.raises(KeyError, match="no parameter named '9.W'"):
        net.params.owner("9.W")
    assert nn.Classifier(net).reg_names == ("0.W", "4.W")  # weights only: no biases, no batchnorm scale


@pytest.mark.parametrize("move", ["classifier", "module"])
def test_nn_to_moves_params_and_buffers_and_back(move, host):
    def make():
        return nn.Classifier(nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm(4), nn.ReLU(), nn.Linear(4, 2, rng=1)))

    model, ref = make(), make()
    X, y = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32), np.array([0, 1, 1, 0, 1])
    ref_loss, _ = ref.loss(X, y)
    (model if move == "classifier" else model.net).to("strict")
    arrays = {**model.params, **model.get_buffers()}
    assert len(arrays) == 8 and {gpunet.backend.backend_of(a) for a in arrays.values()} == {"strict"}
    with gpunet.use_backend("strict"):
        loss, grads = model.loss(gpunet.asarray(X), gpunet.asarray(y))
    assert float(host(loss)) == pytest.approx(float(ref_loss), rel=1e-6)
    (model if move == "classifier" else model.net).to("numpy")
    assert all(isinstance(a, np.ndarray) for a in {**model.params, **model.get_buffers()}.values())
    for k, v in ref.get_buffers().items():  # one training step on each backend: same running statistics
        np.testing.assert_allclose(model.get_buffers()[k], v, rtol=1e-6)


def test_dropout_refuses_pytorch_p_and_train_eval_switch(host):
    with pytest.raises(TypeError, match=r"Dropout\(keep_prob=0.8\)"):
        nn.Dropout(p=0.2)
    drop = nn.Dropout(0.5, rng=0)
    x = np.ones((4, 50), dtype=np.float32)
    assert (drop(x) == 0).any()
    drop.eval()
    np.testing.assert_array_equal(drop(x), x)


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.ReLU().backward(np.ones(2))


def test_model_argument_errors():
    with pytest.raises(ValueError, match="normalization must be"):
        FullyConnectedNet([3], normalization="groupnorm")
    with pytest.raises(ValueError, match="keep probability"):
        FullyConnectedNet([3], dropout_keep_ratio=0)
    with pytest.raises(ValueError, match="activation must be"):
        TwoLayerNet(activation="gelu")
    with pytest.raises(ValueError, match="even height and width"):
        ThreeLayerConvNet(input_dim=(3, 31, 32))
    with pytest.raises(ValueError, match="reg must be"):
        TwoLayerNet(reg=-1)


def test_model_casts_inputs_to_its_dtype(host):
    model = TwoLayerNet(4, 3, 2, dtype=np.float64, seed=0)
    scores = model.loss(np.ones((2, 4), dtype=np.float32))
    assert host(scores).dtype == np.float64


def test_nn_classifier_trains_with_the_solver_and_resumes_exactly(tmp_path):
    from gpunet.data import load_digits
    from gpunet.solver import Solver

    def make(seed):
        net = nn.Sequential(nn.Conv2d(1, 4, 3, pad=1, rng=seed), nn.BatchNorm(4), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Dropout(0.9), nn.Linear(4 * 4 * 4, 10, rng=seed + 1))
        return nn.Classifier(net, reg=1e-4, seed=seed)

    data = load_digits(seed=0).as_solver_data()
    kw = dict(update_rule="adam", optim_config={"learning_rate": 3e-3}, batch_size=64, verbose=False, seed=0)
    straight = make(0)
    Solver(straight, data, num_epochs=3, **kw).train()
    first = make(0)
    Solver(first, data, num_epochs=2, checkpoint_name=str(tmp_path / "c"), restore_best=False, **kw).train()
    resumed = make(7)  # different initialisation and dropout stream: all of it comes from the checkpoint
    solver = Solver(resumed, data, num_epochs=3, resume=str(tmp_path / "c_last.npz"), **kw)
    solver.train()
    assert solver.check_accuracy(data["X_val"], data["y_val"]) > 0.5
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    for k, v in straight.get_buffers().items():
        np.testing.assert_array_equal(resumed.get_buffers()[k], v)


# --- the params table: an assignment never silently changes the model (issues 13.4, 10.12) ---


def test_assigning_another_dtype_is_refused_with_the_way_to_build_it(put, host):
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, seed=0)  # float32 by default
    before = model.params["W1"]
    with pytest.raises(ValueError, match=r"TwoLayerNet.params\['W1'\]: the model computes in float32, got a "
                                         r"float64 array .*TwoLayerNet\(\.\.\., dtype=np\.float64\)"):
        model.params["W1"] = put(np.linspace(-0.7, 0.3, num=20).reshape(5, 4))
    assert model.params["W1"] is before
    model.params["W1"] = put(np.ones((5, 4)), "float32")  # the model's dtype: accepted
    np.testing.assert_array_equal(host(model.params["W1"]), 1)


@pytest.mark.parametrize("value,error,fragment", [
    (np.zeros((4, 5), np.float32), ValueError, r"expected shape \(5, 4\), got \(4, 5\)"),
    ([[0.0] * 4] * 5, ValueError, r"must be an array, got list"),
])
def test_assigning_another_shape_or_a_non_array_is_refused(value, error, fragment):
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, seed=0)
    with pytest.raises(error, match=fragment):
        model.params["W1"] = value


def test_params_cannot_be_added_or_removed():
    model = FullyConnectedNet([4], input_dim=3, num_classes=2, seed=0)
    with pytest.raises(KeyError, match=r"has no parameter named 'w1'; its parameters are W1, b1, W2, b2"):
        model.params["w1"] = model.params["W1"]
    with pytest.raises(TypeError, match="cannot be removed"):
        del model.params["W1"]


def test_assigning_another_backend_is_refused_unless_moving_there():
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, seed=0)
    with gpunet.use_backend("strict"):
        on_strict = gpunet.asarray(np.ones((5, 4)), "float32")
    with pytest.raises(ValueError, match=r"live on numpy, got a strict array; .*model.to\('strict'\)"):
        model.params["W1"] = on_strict
    with gpunet.use_backend("strict"):  # what Model.to does, one entry at a time
        model.params["W1"] = on_strict
    assert gpunet.backend.backend_of(model.params["W1"]) == "strict"


@pytest.mark.parametrize("make,fragment", [
    (lambda: FullyConnectedNet([-1]), "hidden_dims[0] must be an int >= 1, got -1"),
    (lambda: FullyConnectedNet(100), "hidden_dims must be a list of layer sizes such as [100, 50], got 100"),
    (lambda: FullyConnectedNet([10, 2.5]), "hidden_dims[1] must be an int >= 1, got 2.5"),
    (lambda: FullyConnectedNet([3], seed=-1), "seed must be None, an int >= 0"),
    (lambda: FullyConnectedNet([3], seed="abc"), "seed must be None, an int >= 0"),
    (lambda: FullyConnectedNet([3], dropout_keep_ratio=True), "dropout_keep_ratio (the keep probability)"),
    (lambda: FullyConnectedNet([3], num_classes=0), "num_classes must be an int >= 1, got 0"),
    (lambda: TwoLayerNet(input_dim=0), "input_dim must be an int >= 1, got 0"),
    (lambda: TwoLayerNet(hidden_dim=3.0), "hidden_dim must be an int >= 1, got 3.0"),
    (lambda: TwoLayerNet(reg=float("nan")), "reg must be a finite number >= 0.0, got nan"),
    (lambda: TwoLayerNet(dtype="int32"),
     "TwoLayerNet: dtype must be a floating dtype ('float16', 'float32', 'float64'), got 'int32'"),
    (lambda: ThreeLayerConvNet(input_dim=(3, 32)), "input_dim must be (C, H, W)"),
    (lambda: ThreeLayerConvNet(num_filters=0), "num_filters must be an int >= 1, got 0"),
    (lambda: LogisticClassifier(0), "num_features must be an int >= 1, got 0"),
])
def test_model_constructor_errors_name_the_argument(make, fragment):
    with pytest.raises(ValueError) as err:
        make()
    assert fragment in str(err.value)


def test_model_sizes_accept_numpy_integers():
    model = TwoLayerNet(input_dim=np.int64(4), hidden_dim=np.int32(3), num_classes=np.int64(2), reg=np.float32(0.5))
    assert model.params["W1"].shape == (4, 3) and model.reg == 0.5


def test_seeded_dropout_masks_vary_per_call_and_repeat_per_run(host):
    """gpunet's own FullyConnectedNet: seed= gives reproducible runs whose masks still differ
    from step to step (training needs that; the gpunet train CLI passes seed=); the fixed
    mask of CS231n's gradient checks is dropout_param['seed'] (gpunet.compat.cs231n sets it)."""
    X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0])

    def losses(model, calls=3):
        return [float(model.loss(X, y)[0]) for _ in range(calls)]

    def make():
        return FullyConnectedNet([20], input_dim=6, num_classes=3, dropout_keep_ratio=0.5, dtype=np.float64, seed=123)

    first = losses(make())
    assert len(set(first)) == 3
    assert losses(make()) == first
    fixed = make()
    fixed.dropout_param["seed"] = 123
    assert len(set(losses(fixed))) == 1


def test_params_update_checks_everything_before_assigning_and_moves_whole_models():
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, seed=0)
    before = dict(model.params)
    bad = {"W1": np.ones((5, 4), np.float32), "b1": np.ones(4)}  # b1 in float64
    with pytest.raises(ValueError, match=r"params\['b1'\]: the model computes in float32"):
        model.params.update(bad)
    assert all(model.params[k] is v for k, v in before.items())  # nothing assigned
    with gpunet.use_backend("strict"):
        moved = {k: gpunet.asarray(v) for k, v in before.items()}
    with pytest.raises(ValueError, match="live on numpy, got a strict array"):
        model.params.update({"W1": moved["W1"]})  # one entry alone would split the model
    model.params.update(moved)  # every entry on one backend: the model moves
    assert all(gpunet.backend.backend_of(v) == "strict" for v in model.params.values())
