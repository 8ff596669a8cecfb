"""CS231n assignment 2 notebook checks (FullyConnectedNets, BatchNormalization, Dropout,
ConvolutionalNetworks) against ``gpunet.compat.cs231n``, on every backend.

Rewritten from the notebooks' published facts: the inputs each cell constructs (seed
231, ``np.linspace`` ranges) and the numbers it prints or hard-codes (``correct_out``
arrays, losses, statistics). A printed value with k decimals is compared at
``atol=0.5e-k``; a printed relative error is a bound, as the notebook states it."""

import numpy as np
import pytest

import gpunet
from gpunet.compat.cs231n import fast_layers, layer_utils, optim
from gpunet.compat.cs231n import layers as L
from gpunet.compat.cs231n.classifiers.cnn import ThreeLayerConvNet
from gpunet.compat.cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
from gpunet.compat.cs231n.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
)
from gpunet.compat.cs231n.solver import Solver
from gpunet.gradcheck import rel_error

PRINTED8 = dict(rtol=0, atol=5e-9)  # the notebooks print arrays with 8 decimals


def _check_backward(put, forward, backward, inputs, dout, bound):
    """The notebooks' gradient check: ``backward`` of ``forward``'s cache, run on the backend
    under test, against numeric gradients of every input, relative error below ``bound``."""
    _, cache = forward(*[put(a) for a in inputs])
    for got, want in zip(backward(put(dout), cache), _num_grads(lambda *a: forward(*a)[0], inputs, dout)):
        assert rel_error(got, want) < bound


def _num_grads(f, inputs, dout):
    """Numeric gradients of sum(f(*inputs) * dout) for each input, computed on NumPy copies
    (the reference; the analytic side runs on the backend under test)."""
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    return [eval_numerical_gradient_array(lambda _: f(*inputs), a, np.asarray(dout)) for a in inputs]


# --- FullyConnectedNets.ipynb -----------------------------------------------------------------


def test_affine_forward_correct_out(put, host):
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size, weight_size = num_inputs * np.prod(input_shape), output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = L.affine_forward(put(x), put(w), put(b))
    correct_out = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    np.testing.assert_allclose(host(out), correct_out, **PRINTED8)


def test_affine_and_relu_backward_numeric(put):
    np.random.seed(231)
    x, w, b, dout = np.random.randn(10, 2, 3), np.random.randn(6, 5), np.random.randn(5), np.random.randn(10, 5)
    _check_backward(put, L.affine_forward, L.affine_backward, (x, w, b), dout, 1e-9)  # "around 1e-10"

    np.random.seed(231)
    x, dout = put(np.random.randn(10, 10)), put(np.random.randn(10, 10))
    _, cache = L.relu_forward(x)
    assert rel_error(L.relu_backward(dout, cache), eval_numerical_gradient_array(
        lambda _: L.relu_forward(x)[0], x, dout)) < 1e-11  # "around 3e-12"


def test_relu_forward_correct_out(put, host):
    out, _ = L.relu_forward(put(np.linspace(-0.5, 0.5, num=12).reshape(3, 4)))
    correct_out = np.array([[0., 0., 0., 0.], [0., 0., 0.04545455, 0.13636364],
                            [0.22727273, 0.31818182, 0.40909091, 0.5]])
    np.testing.assert_allclose(host(out), correct_out, **PRINTED8)


def test_affine_relu_sandwich_numeric(put):
    np.random.seed(231)
    x, w, b, dout = np.random.randn(2, 3, 4), np.random.randn(12, 10), np.random.randn(10), np.random.randn(2, 10)
    _check_backward(put, layer_utils.affine_relu_forward, layer_utils.affine_relu_backward, (x, w, b), dout, 1e-9)


def test_svm_and_softmax_loss_values(put):
    np.random.seed(231)
    num_classes, num_inputs = 10, 50
    x = 0.001 * np.random.randn(num_inputs, num_classes)
    y = np.random.randint(num_classes, size=num_inputs)
    xd, yd = put(x), put(y)
    for loss_fn, published in ((L.svm_loss, 8.999602749096233), (L.softmax_loss, 2.302545844500738)):
        loss, dx = loss_fn(xd, yd)
        assert type(loss) is float  # CS231n returns a plain number
        assert loss == pytest.approx(published, rel=1e-13)
        xh = x.copy()  # the numeric reference on the host
        num = eval_numerical_gradient(lambda _: loss_fn(xh, y)[0], xh, verbose=False)  # noqa: B023 (used at once)
        assert rel_error(dx, num) < 1e-8


def test_two_layer_net_cell_verbatim(backend, put, host):
    """The cell assigns float64 arrays to the params of a TwoLayerNet built with defaults."""
    np.random.seed(231)
    N, D, H, C = 3, 5, 50, 7
    std = 1e-3
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std)
    assert abs(host(model.params["W1"]).std() - std) < std / 10
    assert abs(host(model.params["W2"]).std() - std) < std / 10
    assert np.all(host(model.params["b1"]) == 0) and np.all(host(model.params["b2"]) == 0)
    model.params["W1"] = put(np.linspace(-0.7, 0.3, num=D * H).reshape(D, H))
    model.params["b1"] = put(np.linspace(-0.1, 0.9, num=H))
    model.params["W2"] = put(np.linspace(-0.3, 0.4, num=H * C).reshape(H, C))
    model.params["b2"] = put(np.linspace(-0.9, 0.1, num=C))
    X = put(np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T)
    correct_scores = np.asarray([
        [11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
        [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
        [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]])
    assert np.abs(host(model.loss(X)) - correct_scores).sum() < 1e-6
    y = put(np.asarray([0, 5, 1]))
    loss, grads = model.loss(X, y)
    assert abs(loss - 3.4702243556) < 1e-10
    model.reg = 1.0
    loss, grads = model.loss(X, y)
    assert abs(loss - 26.5948426952) < 1e-10
    for reg in [0.0, 0.7] if backend == "numpy" else ():  # (test_models checks every backend)
        model.reg = reg
        loss, grads = model.loss(X, y)
        for name in sorted(grads):
            num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False)
            assert rel_error(num, grads[name]) < 1e-6, name  # printed: at most 2.53e-07


def _fc_checks(backend, put, make, published, grad_bounds=()):
    """The notebooks' FullyConnectedNet cell: seed 231, X (2, 15), y, one model per setting
    built in order (each draws its weights from NumPy's global state after the previous).
    For the settings in ``grad_bounds`` (setting -> bound on the relative errors), the cell's
    numeric gradient check too, on NumPy only
    (about a thousand losses per model; test_models.py checks the same model code's
    gradients on every backend)."""
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X, y = np.random.randn(N, D), np.random.randint(C, size=(N,))
    Xd, yd = put(X), put(y)
    for setting, want in published.items():
        model = make(setting, dict(input_dim=D, num_classes=C, weight_scale=5e-2, dtype=np.float64), [H1, H2])
        loss, grads = model.loss(Xd, yd)
        assert loss == pytest.approx(want, rel=1e-13), setting
        assert model.loss(Xd, yd)[0] == loss  # dropout masks are fixed by the seed
        assert set(grads) == set(model.params)
        for name in sorted(grads) if backend == "numpy" and setting in grad_bounds else ():
            num = eval_numerical_gradient(lambda _: model.loss(Xd, yd)[0],  # noqa: B023 (used at once)
                                          model.params[name], verbose=False, h=1e-5)
            assert rel_error(num, grads[name]) < dict(grad_bounds)[setting], (setting, name)


def test_fully_connected_net_initial_loss(backend, put):
    _fc_checks(backend, put, lambda reg, kw, hidden: FullyConnectedNet(hidden, reg=reg, **kw),
               {0: 2.3004790897684924, 3.14: 7.052114776533016})


@pytest.mark.parametrize("rule,config,expected", [
    ("sgd_momentum", {"learning_rate": 1e-3, "velocity": np.linspace(0.6, 0.9, num=20).reshape(4, 5)}, {
        "next_w": [[0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
                   [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
                   [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
                   [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]],
        "velocity": [[0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
                     [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
                     [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
                     [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]]}),
    ("rmsprop", {"learning_rate": 1e-2, "cache": np.linspace(0.6, 0.9, num=20).reshape(4, 5)}, {
        "next_w": [[-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
                   [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
                   [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
                   [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]],
        "cache": [[0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
                  [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
                  [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
                  [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]]}),
    ("adam", {"learning_rate": 1e-2, "m": np.linspace(0.6, 0.9, num=20).reshape(4, 5),
              "v": np.linspace(0.7, 0.5, num=20).reshape(4, 5), "t": 5}, {
        "next_w": [[-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
                   [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
                   [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
                   [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]],
        "v": [[0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
              [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
              [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
              [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]],
        "m": [[0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
              [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
              [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
              [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]]}),
])
def test_update_rules_expected_values(rule, config, expected, put, host):
    N, D = 4, 5
    w_host = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    w, dw = put(w_host), put(np.linspace(-0.6, 0.4, num=N * D).reshape(N, D))
    config = {k: put(v) if isinstance(v, np.ndarray) else v for k, v in config.items()}
    next_w, _ = getattr(optim, rule)(w, dw, config=config)
    np.testing.assert_allclose(host(next_w), expected["next_w"], **PRINTED8)
    for key, want in expected.items():
        if key != "next_w":
            np.testing.assert_allclose(host(config[key]), want, **PRINTED8)
    np.testing.assert_array_equal(host(w), w_host)  # as in CS231n, w itself is left alone


def test_solver_trains_a_two_layer_net_with_cs231n_attributes():
    data = gpunet.data.load_digits(seed=0, flatten=True).as_solver_data()
    model = TwoLayerNet(input_dim=64, hidden_dim=50, weight_scale=1e-2, reg=1e-4)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, num_epochs=3,
                    batch_size=100, verbose=False, seed=0)
    solver.train()
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 3
    assert len(solver.loss_history) == 3 * solver.iterations_per_epoch
    assert solver.best_val_acc == max(solver.val_acc_history) > 0.8
    assert model.params["W1"].dtype == np.float64  # CS231n's TwoLayerNet is float64


# --- BatchNormalization.ipynb ------------------------------------------------------------------


def _two_layer_activations(N, D1, D2, D3):
    np.random.seed(231)
    X, W1, W2 = np.random.randn(N, D1), np.random.randn(D1, D2), np.random.randn(D2, D3)
    return np.maximum(0, X.dot(W1)).dot(W2)


def test_batchnorm_forward_train_statistics(put, host):
    a = put(_two_layer_activations(200, 50, 60, 3))
    a_norm, _ = L.batchnorm_forward(a, put(np.ones(3)), put(np.zeros(3)), {"mode": "train"})
    np.testing.assert_allclose(host(a_norm).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(host(a_norm).std(axis=0), [0.99999999, 1., 1.], **PRINTED8)
    a_norm, _ = L.batchnorm_forward(a, put(np.asarray([1.0, 2.0, 3.0])), put(np.asarray([11.0, 12.0, 13.0])),
                                    {"mode": "train"})
    np.testing.assert_allclose(host(a_norm).mean(axis=0), [11., 12., 13.], atol=1e-12)
    np.testing.assert_allclose(host(a_norm).std(axis=0), [0.99999999, 1.99999999, 2.99999999], **PRINTED8)


def test_batchnorm_forward_test_time_statistics(put, host):
    """The running statistics start at 0 as in CS231n: these printed values need it."""
    np.random.seed(231)
    N, D1, D2, D3 = 200, 50, 60, 3
    W1, W2 = np.random.randn(D1, D2), np.random.randn(D2, D3)
    bn_param = {"mode": "train"}
    gamma, beta = put(np.ones(D3)), put(np.zeros(D3))
    for _ in range(50):
        X = np.random.randn(N, D1)
        L.batchnorm_forward(put(np.maximum(0, X.dot(W1)).dot(W2)), gamma, beta, bn_param)
    bn_param["mode"] = "test"
    X = np.random.randn(N, D1)
    a_norm, _ = L.batchnorm_forward(put(np.maximum(0, X.dot(W1)).dot(W2)), gamma, beta, bn_param)
    np.testing.assert_allclose(host(a_norm).mean(axis=0), [-0.03927354, -0.04349152, -0.10452688], **PRINTED8)
    np.testing.assert_allclose(host(a_norm).std(axis=0), [1.01531428, 1.01238373, 0.97819988], **PRINTED8)


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_normalization_backward_numeric(norm, put):
    np.random.seed(231)
    N, D = 4, 5
    x, gamma, beta, dout = 5 * np.random.randn(N, D) + 12, np.random.randn(D), np.random.randn(D), np.random.randn(N, D)
    param = {"mode": "train"} if norm == "batchnorm" else {}
    # a fresh parameter dict per call, so that running statistics stay on one backend
    _check_backward(put, lambda *a: getattr(L, f"{norm}_forward")(*a, dict(param)), getattr(L, f"{norm}_backward"),
                    (x, gamma, beta), dout, 1e-8)  # "relative errors between 1e-13 and 1e-8"


def test_batchnorm_backward_alt_agrees(put):
    np.random.seed(231)
    N, D = 100, 500
    x, gamma, beta, dout = 5 * np.random.randn(N, D) + 12, np.random.randn(D), np.random.randn(D), np.random.randn(N, D)
    _, cache = L.batchnorm_forward(put(x), put(gamma), put(beta), {"mode": "train"})
    for a, b in zip(L.batchnorm_backward(put(dout), cache), L.batchnorm_backward_alt(put(dout), cache)):
        assert rel_error(a, b) < 1e-10  # printed: 1.3e-12, 0, 0


def test_fully_connected_net_with_batchnorm(backend, put):
    _fc_checks(backend, put,
               lambda reg, kw, hidden: FullyConnectedNet(hidden, reg=reg, normalization="batchnorm", **kw),
               {0: 2.2611955101340957, 3.14: 6.996533220108303})


def test_layernorm_forward_statistics(put, host):
    a = put(_two_layer_activations(4, 50, 60, 3))
    a_norm, _ = L.layernorm_forward(a, put(np.ones(3)), put(np.zeros(3)), {"mode": "train"})
    np.testing.assert_allclose(host(a_norm).mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(host(a_norm).std(axis=1), [0.99999995, 0.99999999, 1., 0.99999969], **PRINTED8)
    a_norm, _ = L.layernorm_forward(a, put(np.full(3, 3.0)), put(np.full(3, 5.0)), {"mode": "train"})
    np.testing.assert_allclose(host(a_norm).std(axis=1), [2.99999985, 2.99999998, 2.99999999, 2.99999907],
                               **PRINTED8)


# --- Dropout.ipynb -----------------------------------------------------------------------------


def test_dropout_forward_statistics(put, host):
    """Masks come from NumPy's global state, as CS231n's np.random.rand: the printed means repeat."""
    np.random.seed(231)
    x = np.random.randn(500, 500) + 10
    xd = put(x)
    published = {0.25: (10.014059116977283, 0.749784), 0.4: (9.977917658761159, 0.600796),
                 0.7: (9.987811912159426, 0.30074)}
    for p, (mean, zeros) in published.items():
        out, _ = L.dropout_forward(xd, {"mode": "train", "p": p})
        out_test, _ = L.dropout_forward(xd, {"mode": "test", "p": p})
        assert host(out).mean() == pytest.approx(mean, rel=1e-13)
        assert (host(out) == 0).mean() == zeros
        np.testing.assert_array_equal(host(out_test), x)


def test_dropout_backward_numeric(put):
    np.random.seed(231)
    x, dout = put(np.random.randn(10, 10) + 10), put(np.random.randn(10, 10))
    dropout_param = {"mode": "train", "p": 0.2, "seed": 123}
    _, cache = L.dropout_forward(x, dropout_param)
    dx_num = eval_numerical_gradient_array(lambda xx: L.dropout_forward(xx, dropout_param)[0], x, dout)
    assert rel_error(L.dropout_backward(dout, cache), dx_num) < 1e-10  # printed 5.4e-11


def test_fully_connected_net_with_dropout(backend, put):
    """Issue 13.3: the seed fixes the mask, so the gradient check works (it showed 1.0).
    (The keep=1 model is the plain one: its gradients are checked in test_models.py.)"""
    _fc_checks(backend, put,
               lambda keep, kw, hidden: FullyConnectedNet(hidden, dropout_keep_ratio=keep, seed=123, **kw),
               {1: 2.3004790897684924, 0.75: 2.302371489704412, 0.5: 2.3042759220785896},
               {0.75: 1e-5, 0.5: 1e-5})  # printed: 4.76e-06 or less


def test_older_dropout_keyword_is_the_keep_probability(put):
    X, y = put(np.random.default_rng(0).standard_normal((3, 6))), put(np.array([0, 1, 2]))
    np.random.seed(5)
    new = FullyConnectedNet([7], input_dim=6, num_classes=3, dropout_keep_ratio=0.6, seed=1, dtype=np.float64)
    np.random.seed(5)
    old = FullyConnectedNet([7], input_dim=6, num_classes=3, dropout=0.6, seed=1, dtype=np.float64)
    assert old.loss(X, y)[0] == new.loss(X, y)[0]
    assert old.dropout_param["p"] == 0.6
    assert FullyConnectedNet([7], use_batchnorm=True).normalization == "batchnorm"
    with pytest.raises(ValueError, match=r"dropout \(the keep probability since CS231n 2019, 1 = no dropout"):
        FullyConnectedNet([7], dropout=0)
    with pytest.raises(ValueError, match="not both"):
        FullyConnectedNet([7], dropout=0.5, dropout_keep_ratio=0.5)
    with pytest.raises(ValueError, match="contradicts"):
        FullyConnectedNet([7], use_batchnorm=True, normalization="layernorm")


# --- ConvolutionalNetworks.ipynb ---------------------------------------------------------------


CONV_CORRECT_OUT = np.array([
    [[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
     [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
     [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
    [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
     [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
     [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]])


@pytest.mark.parametrize("forward", [L.conv_forward_naive, fast_layers.conv_forward_fast])
def test_conv_forward_correct_out(forward, put, host):
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    out, _ = forward(put(x), put(w), put(np.linspace(-0.1, 0.2, num=3)), {"stride": 2, "pad": 1})
    np.testing.assert_allclose(host(out), CONV_CORRECT_OUT, **PRINTED8)


def test_conv_backward_naive_numeric(put):
    np.random.seed(231)
    x, w, b = np.random.randn(4, 3, 5, 5), np.random.randn(2, 3, 3, 3), np.random.randn(2,)
    dout = np.random.randn(4, 2, 5, 5)
    _check_backward(put, lambda *a: L.conv_forward_naive(*a, {"stride": 1, "pad": 1}), L.conv_backward_naive,
                    (x, w, b), dout, 1e-7)  # printed: 1.2e-08 or less


@pytest.mark.parametrize("forward", [L.max_pool_forward_naive, fast_layers.max_pool_forward_fast])
def test_max_pool_forward_correct_out(forward, put, host):
    x_shape = (2, 3, 4, 4)
    x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
    out, _ = forward(put(x), {"pool_width": 2, "pool_height": 2, "stride": 2})
    correct_out = np.array([
        [[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
         [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
         [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
        [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
         [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
         [[0.32631579, 0.34105263], [0.38526316, 0.4]]]])
    np.testing.assert_allclose(host(out), correct_out, **PRINTED8)


def test_max_pool_backward_naive_numeric(put):
    np.random.seed(231)
    x, dout = np.random.randn(3, 2, 8, 8), np.random.randn(3, 2, 4, 4)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    (dx_num,) = _num_grads(lambda a: L.max_pool_forward_naive(a, pool_param)[0], (x,), dout)
    _, cache = L.max_pool_forward_naive(put(x), pool_param)
    assert rel_error(L.max_pool_backward_naive(put(dout), cache), dx_num) < 1e-10  # printed 3.3e-12


def test_fast_layers_agree_with_naive(put):
    """The "fast vs naive" cells (batch cut from 100 to 3 images: the naive loops are slow on purpose)."""
    np.random.seed(231)
    x, w, b = np.random.randn(100, 3, 31, 31)[:3], np.random.randn(25, 3, 3, 3), np.random.randn(25,)
    dout = np.random.randn(100, 25, 16, 16)[:3]
    conv_param = {"stride": 2, "pad": 1}
    out_naive, cache_naive = L.conv_forward_naive(put(x), put(w), put(b), conv_param)
    out_fast, cache_fast = fast_layers.conv_forward_fast(put(x), put(w), put(b), conv_param)
    assert rel_error(out_naive, out_fast) < 1e-9  # "around e-9 or less"
    grads_naive = L.conv_backward_naive(put(dout), cache_naive)
    for name in ("fast", "strides", "im2col"):
        for a, b in zip(grads_naive, getattr(fast_layers, f"conv_backward_{name}")(put(dout), cache_fast)):
            assert rel_error(a, b) < 1e-9

    np.random.seed(231)
    x, dout = put(np.random.randn(100, 3, 32, 32)[:3]), put(np.random.randn(100, 3, 16, 16)[:3])
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out_naive, cache_naive = L.max_pool_forward_naive(x, pool_param)
    for name in ("fast", "reshape", "im2col"):
        out_fast, cache_fast = getattr(fast_layers, f"max_pool_forward_{name}")(x, pool_param)
        assert rel_error(out_naive, out_fast) == 0.0  # printed: 0.0
        assert rel_error(L.max_pool_backward_naive(dout, cache_naive),
                         getattr(fast_layers, f"max_pool_backward_{name}")(dout, cache_fast)) == 0.0


def test_fast_conv_floors_like_the_naive_loops(put):
    rng = np.random.default_rng(0)
    x, w = put(rng.standard_normal((2, 3, 32, 32))), put(rng.standard_normal((4, 3, 3, 3)))
    b = put(rng.standard_normal(4))
    conv_param = {"stride": 2, "pad": 0}  # (32 - 3) / 2 is not whole: 15 outputs, the last column unused
    out_naive, _ = L.conv_forward_naive(x, w, b, conv_param)
    out_fast, _ = fast_layers.conv_forward_fast(x, w, b, conv_param)
    assert rel_error(out_naive, out_fast) < 1e-12


@pytest.mark.parametrize("sandwich", ["conv_relu_pool", "conv_relu"])
def test_conv_sandwich_numeric(sandwich, put):
    np.random.seed(231)
    size = 16 if sandwich == "conv_relu_pool" else 8
    x, w, b = np.random.randn(2, 3, size, size), np.random.randn(3, 3, 3, 3), np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    params = [{"stride": 1, "pad": 1}] + ([{"pool_height": 2, "pool_width": 2, "stride": 2}]
                                          if sandwich == "conv_relu_pool" else [])
    forward = getattr(layer_utils, f"{sandwich}_forward")
    _check_backward(put, lambda *a: forward(*a, *params), getattr(layer_utils, f"{sandwich}_backward"), (x, w, b),
                    dout, 1e-7)  # printed: 8.4e-09 or less


def test_three_layer_convnet_sanity_and_gradients(put, host):
    np.random.seed(231)
    model = ThreeLayerConvNet()
    assert host(model.params["W1"]).dtype == np.float32  # CS231n's default
    N = 50
    X, y = put(np.random.randn(N, 3, 32, 32)), put(np.random.randint(10, size=N))
    loss, _ = model.loss(X, y)
    assert loss == pytest.approx(np.log(10), abs=1e-3)  # "about log(C)"
    model.reg = 0.5
    assert model.loss(X, y)[0] > loss

    num_inputs, input_dim, num_classes = 2, (3, 16, 16), 10
    np.random.seed(231)
    X = put(np.random.randn(num_inputs, *input_dim))
    y = put(np.random.randint(num_classes, size=num_inputs))
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=input_dim, hidden_dim=7, dtype=np.float64)
    loss, grads = model.loss(X, y)
    for name in sorted(grads):  # a sample of entries (the notebook checks all; test_models does)
        errors = grad_check_sparse(lambda _: model.loss(X, y)[0], model.params[name], grads[name], num_checks=6,
                                   h=1e-6, seed=0, verbose=False)
        assert max(errors) < 3e-2, name  # "relative errors up to the order of e-2"


def test_spatial_batchnorm_forward_statistics(put, host):
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = put(4 * np.random.randn(N, C, H, W) + 10)
    out, _ = L.spatial_batchnorm_forward(x, put(np.ones(C)), put(np.zeros(C)), {"mode": "train"})
    np.testing.assert_allclose(host(out).mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(host(out).std(axis=(0, 2, 3)), [0.99999962, 0.99999951, 0.9999996], **PRINTED8)
    out, _ = L.spatial_batchnorm_forward(x, put(np.asarray([3., 4., 5.])), put(np.asarray([6., 7., 8.])),
                                         {"mode": "train"})
    np.testing.assert_allclose(host(out).mean(axis=(0, 2, 3)), [6., 7., 8.], atol=1e-12)
    np.testing.assert_allclose(host(out).std(axis=(0, 2, 3)), [2.99999885, 3.99999804, 4.99999798], **PRINTED8)

    np.random.seed(231)
    N, C, H, W = 10, 4, 11, 12
    bn_param = {"mode": "train"}
    gamma, beta = put(np.ones(C)), put(np.zeros(C))
    for _ in range(50):
        L.spatial_batchnorm_forward(put(2.3 * np.random.randn(N, C, H, W) + 13), gamma, beta, bn_param)
    bn_param["mode"] = "test"
    a_norm, _ = L.spatial_batchnorm_forward(put(2.3 * np.random.randn(N, C, H, W) + 13), gamma, beta, bn_param)
    np.testing.assert_allclose(host(a_norm).mean(axis=(0, 2, 3)),
                               [-0.08034406, 0.07562881, 0.05716371, 0.04378383], **PRINTED8)
    np.testing.assert_allclose(host(a_norm).std(axis=(0, 2, 3)),
                               [0.96718744, 1.0299714, 1.02887624, 1.00585577], **PRINTED8)


@pytest.mark.parametrize("norm", ["spatial_batchnorm", "spatial_groupnorm"])
def test_spatial_normalization_backward_numeric(norm, put):
    np.random.seed(231)
    N, C, H, W = 2, 3 if norm == "spatial_batchnorm" else 6, 4, 5
    shape = (C,) if norm == "spatial_batchnorm" else (1, C, 1, 1)
    x, gamma, beta = 5 * np.random.randn(N, C, H, W) + 12, np.random.randn(*shape), np.random.randn(*shape)
    dout = np.random.randn(N, C, H, W)
    forward = getattr(L, f"{norm}_forward")

    def run(*a):  # a fresh parameter dict per call: running statistics stay on one backend
        return forward(*a, {"mode": "train"}) if norm == "spatial_batchnorm" else forward(*a, 2, {})

    _check_backward(put, run, getattr(L, f"{norm}_backward"), (x, gamma, beta), dout,
                    1e-6)  # "errors of magnitudes between 1e-12~1e-06"


def test_spatial_groupnorm_forward_statistics(put, host):
    """Checked against the definition applied to the notebook's printed "before" statistics:
    std after = s / sqrt(s**2 + eps) per (sample, group). (The notebook we found prints
    0.99999834... after; that contradicts its own "before" stds, 3.67070958 and so on.)"""
    np.random.seed(231)
    N, C, H, W, G = 2, 6, 4, 5, 2
    x = 4 * np.random.randn(N, C, H, W) + 10
    before = np.array([3.67070958, 3.09892597, 4.27043622, 3.97521327])
    np.testing.assert_allclose(x.reshape((N * G, -1)).std(axis=1), before, **PRINTED8)
    out, _ = L.spatial_groupnorm_forward(put(x), put(np.ones((1, C, 1, 1))), put(np.zeros((1, C, 1, 1))), G,
                                         {"mode": "train"})
    out_g = host(out).reshape((N * G, -1))
    np.testing.assert_allclose(out_g.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out_g.std(axis=1), before / np.sqrt(before**2 + 1e-5), rtol=1e-9)


# --- data_utils ---------------------------------------------------------------------------------


def _fake_cifar(directory, per_batch=4):
    """Five training batches and a test batch in the CIFAR-10 python format; image i of
    batch b has every pixel of channel c equal to 10*b + i + c (so layouts can be checked)."""
    import pickle

    directory.mkdir()
    for b, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = np.stack([np.stack([np.full((32, 32), 10 * b + i + c) for c in range(3)]) for i in range(per_batch)])
        batch = {b"data": images.reshape(per_batch, 3072).astype(np.uint8),
                 b"labels": [(b + i) % 10 for i in range(per_batch)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    return directory


def test_load_cifar10_in_cs231n_layout(tmp_path):
    from gpunet.compat.cs231n.data_utils import load_CIFAR10

    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(_fake_cifar(tmp_path / "cifar-10-batches-py")))
    assert Xtr.shape == (20, 32, 32, 3) and Xtr.dtype == np.float64 and Xte.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(Xtr[5, 0, 0], [11, 12, 13])  # batch 1, image 1: channels last
    np.testing.assert_array_equal(Ytr[:6], [0, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(Yte, [5, 6, 7, 8])


def test_get_cifar10_data_splits_and_subtracts_the_training_mean(tmp_path):
    from gpunet.compat.cs231n.data_utils import get_CIFAR10_data

    root = _fake_cifar(tmp_path / "cifar-10-batches-py")
    data = get_CIFAR10_data(num_training=15, num_validation=3, num_test=2, cifar10_dir=str(tmp_path))
    assert {k: v.shape for k, v in data.items()} == {
        "X_train": (15, 3, 32, 32), "y_train": (15,), "X_val": (3, 3, 32, 32), "y_val": (3,),
        "X_test": (2, 3, 32, 32), "y_test": (2,)}
    raw = get_CIFAR10_data(num_training=15, num_validation=3, num_test=2, subtract_mean=False, cifar10_dir=str(root))
    mean = raw["X_train"].mean(axis=0)
    np.testing.assert_allclose(data["X_val"], raw["X_val"] - mean)
    np.testing.assert_array_equal(raw["X_val"][0, :, 0, 0], [33, 34, 35])  # training image 15 = batch 4, image 3
    with pytest.raises(ValueError, match="asked for 19 \\+ 3 training/validation"):
        get_CIFAR10_data(num_training=19, num_validation=3, cifar10_dir=str(root))
    with pytest.raises(gpunet.data.DatasetNotFoundError, match="CIFAR-10 not found"):
        get_CIFAR10_data(cifar10_dir=str(tmp_path / "missing"))
