"""I2DL exercise tests (exercises 3 to 6 and the batchnorm/dropout exercise) against
``gpunet.compat.i2dl``, on every backend, rewritten from the exercises' published
facts (their inputs and hard-coded values) and I2DL's conventions (issue 13.6)."""

import numpy as np
import pytest
from tolerances import GRAD_REL_ERROR, model_grad_error

from gpunet.compat.i2dl import layers as bn_layers
from gpunet.compat.i2dl.networks.classification_net import ClassificationNet
from gpunet.compat.i2dl.networks.classifier import Classifier
from gpunet.compat.i2dl.networks.layer import (
    LeakyRelu,
    Relu,
    Sigmoid,
    Tanh,
    affine_backward,
    affine_forward,
    sigmoid_backward,
    sigmoid_forward,
)
from gpunet.compat.i2dl.networks.loss import BCE, L1, MSE, CrossEntropyFromLogits
from gpunet.compat.i2dl.networks.optimizer import SGD, Adam, Optimizer, SGDMomentum
from gpunet.gradcheck import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)

PRINTED8 = dict(rtol=0, atol=5e-9)


def _numeric(f, x, dout):
    """Numeric gradient of sum(f(x) * dout) on a float64 NumPy copy of x (the reference)."""
    x = np.array(x, dtype=np.float64)
    return eval_numerical_gradient_array(lambda _: f(x), x, np.asarray(dout))


# --- exercise 5: layers ------------------------------------------------------------------------


def test_affine_forward_and_averaged_backward(put, host):
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    x = np.linspace(-0.1, 0.5, num=num_inputs * np.prod(input_shape)).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=output_dim * np.prod(input_shape)).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = affine_forward(put(x), put(w), put(b))
    np.testing.assert_allclose(host(out), [[1.49834967, 1.70660132, 1.91485297],
                                           [3.25553199, 3.5141327, 3.77273342]], **PRINTED8)

    rng = np.random.default_rng(5)
    n = 10
    x, w, b, dout = rng.standard_normal((n, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5), \
        rng.standard_normal((n, 5))
    _, cache = affine_forward(put(x), put(w), put(b))
    dx, dw, db = affine_backward(put(dout), cache)
    assert rel_error(dx, _numeric(lambda a: affine_forward(a, w, b)[0], x, dout)) < 1e-7
    # exercise 5's solution averages dw and db over the batch: the numeric sum / n
    assert rel_error(dw, _numeric(lambda a: affine_forward(x, a, b)[0], w, dout) / n) < 1e-7
    assert rel_error(db, _numeric(lambda a: affine_forward(x, w, a)[0], b, dout) / n) < 1e-7


def test_sigmoid_forward_correct_out_and_backward(put, host):
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    correct_out = [[0.37754067, 0.39913012, 0.42111892, 0.44342513],
                   [0.46596182, 0.48863832, 0.51136168, 0.53403818],
                   [0.55657487, 0.57888108, 0.60086988, 0.62245933]]
    for forward in (sigmoid_forward, Sigmoid().forward):
        out, _ = forward(put(x))
        np.testing.assert_allclose(host(out), correct_out, **PRINTED8)
    x, dout = np.random.default_rng(1).standard_normal((10, 10)), np.random.default_rng(2).standard_normal((10, 10))
    _, cache = sigmoid_forward(put(x))
    assert rel_error(sigmoid_backward(put(dout), cache), _numeric(lambda a: sigmoid_forward(a)[0], x, dout)) < 1e-8


@pytest.mark.parametrize("layer", [Sigmoid(), Relu(), LeakyRelu(slope=0.1), Tanh()],
                         ids=lambda layer: type(layer).__name__)
def test_activation_objects_forward_backward(layer, put, host):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 7))
    x = np.where(np.abs(x) < 0.05, 0.05, x)  # away from the ReLU kink
    dout = rng.standard_normal((6, 7))
    out, cache = layer.forward(put(x))
    expected = {"Sigmoid": 1 / (1 + np.exp(-x)), "Relu": np.maximum(x, 0), "LeakyRelu": np.where(x > 0, x, 0.1 * x),
                "Tanh": np.tanh(x)}[type(layer).__name__]
    np.testing.assert_allclose(host(out), expected, rtol=1e-12)
    assert rel_error(layer.backward(put(dout), cache), _numeric(lambda a: layer.forward(a)[0], x, dout)) < 1e-8


# --- exercise 5/6: networks --------------------------------------------------------------------


def _regression_net(put, D=5, H=50):
    """Exercise 5's RegressionNet (affine - sigmoid - affine, one output) with its linspace params."""
    model = ClassificationNet(activation=Sigmoid(), num_layer=2, input_size=D, hidden_size=H, num_classes=1)
    model.params["W1"] = put(np.linspace(-0.7, 0.3, num=D * H).reshape(D, H))
    model.params["b1"] = put(np.linspace(-0.1, 0.9, num=H))
    model.params["W2"] = put(np.linspace(-0.3, 0.4, num=H).reshape(H, 1))
    model.params["b2"] = put(np.linspace(-0.9, 0.1, num=1))
    return model


def test_regression_net_forward_correct_y(put, host):
    N, D = 3, 5
    model = _regression_net(put)
    y_pred = model.forward(put(np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T))
    assert np.abs(host(y_pred) - [[1.5916902], [1.59461811], [1.61232696]]).sum() < 1e-6


@pytest.mark.parametrize("activation", [Sigmoid(), Relu(), Tanh()], ids=lambda a: type(a).__name__)
def test_classification_net_backward_is_the_gradient_of_the_mean_loss(activation, put, host):
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((6, 8)), rng.integers(0, 3, 6)
    model = ClassificationNet(activation=activation, num_layer=3, input_size=8, hidden_size=5, num_classes=3,
                              reg=0.1)
    for k in model.params:  # random biases too, so that no ReLU input sits at its kink
        model.params[k] = put(0.5 * rng.standard_normal(model.params[k].shape))
    loss_fn = CrossEntropyFromLogits()
    scores = model.forward(put(X))
    grads = model.backward(loss_fn.backward(scores, put(y)))

    def total(_):
        data = loss_fn(model.forward(put(X)), put(y))
        return data + model.reg_strength * sum(float(np.sum(host(model.params[f"W{i}"]) ** 2)) for i in (1, 2, 3))

    for name in model.params:
        num = eval_numerical_gradient(total, model.params[name], verbose=False)
        assert model_grad_error(grads[name], num) < GRAD_REL_ERROR, name


# --- exercise 4: losses, classifier, optimizer --------------------------------------------------


@pytest.mark.parametrize("loss_cls,y_out,y_truth,per_sample", [
    (L1, [7., 2.], [5., 4.], [2., 2.]),
    (MSE, [7., 2.], [5., 4.], [4., 4.]),
    (BCE, [0.5, 0.3], [1., 0.], [-np.log(0.5), -np.log(0.7)]),
])
def test_losses_forward_mean_and_individual(loss_cls, y_out, y_truth, per_sample, put, host):
    loss = loss_cls()
    a, b = put(np.array(y_out)), put(np.array(y_truth))
    mean = loss(a, b)
    assert type(mean) is float and mean == pytest.approx(np.mean(per_sample), rel=1e-12)
    np.testing.assert_allclose(host(loss(a, b, individual_losses=True)), per_sample, rtol=1e-12)
    assert loss.forward(a, b) == mean


@pytest.mark.parametrize("loss_cls,y_out,y_truth", [
    (L1, [5., 2.], [3., 4.]), (MSE, [5., 2.], [3., 4.]), (BCE, [0.5, 0.3], [1., 0.]), (BCE, [0.2, 0.9], [0.3, 0.6]),
])
def test_losses_backward_is_the_gradient_of_the_mean(loss_cls, y_out, y_truth, put, host):
    loss = loss_cls()
    y_out, y_truth = np.array(y_out), np.array(y_truth)
    # the exercise's check: d(individual loss)/d(y_out) by central differences, divided by N
    h = 1e-6
    expected = (host(loss(put(y_out + h), put(y_truth), individual_losses=True))
                - host(loss(put(y_out - h), put(y_truth), individual_losses=True))) / (2 * h) / len(y_out)
    assert rel_error(loss.backward(put(y_out), put(y_truth)), expected) < 1e-8


def test_l1_gradient_is_zero_where_prediction_equals_target(put, host):
    np.testing.assert_array_equal(host(L1().backward(put(np.array([1., 1.])), put(np.array([1., 1.])))), [0., 0.])


def test_bce_refuses_targets_outside_the_unit_interval(put):
    """I2DL's own loss test passes targets 2 and 4; BCE of such targets is meaningless and
    gpunet refuses them (as PyTorch does) instead of returning a number."""
    with pytest.raises(ValueError, match=r"targets y must lie in \[0, 1\]"):
        BCE()(np.array([0.5, 0.3]), np.array([2., 4.]))


def test_cross_entropy_from_logits(put, host):
    rng = np.random.default_rng(6)
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    per_sample = -np.log(probs[np.arange(5), labels])
    loss = CrossEntropyFromLogits()
    assert loss(put(logits), put(labels)) == pytest.approx(per_sample.mean(), rel=1e-12)
    np.testing.assert_allclose(host(loss(put(logits), put(labels), individual_losses=True)), per_sample, rtol=1e-12)
    expected = probs.copy()
    expected[np.arange(5), labels] -= 1
    np.testing.assert_allclose(host(loss.backward(put(logits), put(labels))), expected / 5, rtol=1e-12)


def test_classifier_sigmoid_of_python_numbers():
    """Exercises 3 and 4: sigmoid(np.float(0)) == 0.5 and sigmoid(100) ~ 1 (np.float was Python's float)."""
    model = Classifier()
    assert model.sigmoid(0.0) == 0.5
    assert abs(1 - model.sigmoid(100.0)) < 1e-7


def test_classifier_sigmoid_of_a_numpy_scalar():
    assert Classifier().sigmoid(np.float64(0)) == 0.5


def test_classifier_sigmoid_of_arrays(put, host):
    model = Classifier()
    assert host(model.sigmoid(put(np.zeros(5)))).sum() == 5 * 0.5
    assert abs(5 - host(model.sigmoid(put(np.full(5, 100.0)))).sum()) < 1e-7


def test_classifier_folds_the_bias_into_the_last_row_of_w(put, host):
    rng = np.random.default_rng(7)
    X, W = rng.standard_normal((6, 2)), rng.standard_normal((3, 1))
    model = Classifier(num_features=2)
    model.initialize_weights(put(W))
    y = model.forward(put(X))
    X1 = np.concatenate([X, np.ones((6, 1))], axis=1)  # I2DL appends a column of ones
    np.testing.assert_allclose(host(y), 1 / (1 + np.exp(-X1 @ W)), rtol=1e-12)
    dout = rng.standard_normal((6, 1))
    dW = model.backward(put(dout))

    def forward(w):
        model.initialize_weights(w)
        return host(model.forward(X))

    assert host(dW).shape == (3, 1)
    assert rel_error(dW, _numeric(forward, W, dout)) < 1e-8
    with pytest.raises(ValueError, match=r"weights must have shape \(num_features \+ 1, 1\) = \(3, 1\)"):
        model.initialize_weights(np.zeros((2, 1)))


def test_exercise4_optimizer_step(put, host):
    model = Classifier(num_features=2)
    w0 = np.array([[0.5], [-0.25], [1.0]])
    model.initialize_weights(put(w0))
    dw = np.array([[1.0], [2.0], [-3.0]])
    Optimizer(model, learning_rate=0.1).step(put(dw))
    np.testing.assert_allclose(host(model.W), w0 - 0.1 * dw, rtol=1e-15)


# --- exercise 5/6: optimizers -----------------------------------------------------------------


def _opt_inputs(put):
    N, D = 4, 5
    return (put(np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)), put(np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)),
            np.linspace(0.6, 0.9, num=N * D).reshape(N, D))


def test_sgd_momentum_update_matches_the_published_expected_values(put, host):
    """The momentum formula I2DL gives (v = mu v - lr dw; w + v) is CS231n's: its expected values."""
    w, dw, v = _opt_inputs(put)
    next_w, config = SGDMomentum(None, None)._update(w, dw, {"velocity": put(v)}, lr=1e-3)
    np.testing.assert_allclose(host(next_w)[0], [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789], **PRINTED8)
    np.testing.assert_allclose(host(config["velocity"])[3], [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096],
                               **PRINTED8)
    assert config["momentum"] == 0.9


def test_adam_update_and_i2dl_default_epsilon(put, host):
    w, dw, m = _opt_inputs(put)
    v = np.linspace(0.7, 0.5, num=20).reshape(4, 5)
    config = {"m": put(m), "v": put(v), "t": 5, "epsilon": 1e-8}  # CS231n's published case
    next_w, config = Adam(_Model(), None)._update(w, dw, config, lr=1e-2)
    np.testing.assert_allclose(host(next_w)[0], [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
                               **PRINTED8)
    assert config["t"] == 6
    _, defaults = Adam(_Model(), None)._update(w, dw, None, lr=1e-2)
    assert defaults["epsilon"] == 1e-4 and defaults["beta1"] == 0.9 and defaults["beta2"] == 0.999
    # the first step with I2DL's epsilon, written out
    g = host(dw)
    m1, v1 = 0.1 * g, 0.001 * g * g
    expected = host(w) - 1e-2 * (m1 / 0.1) / (np.sqrt(v1 / 0.001) + 1e-4)
    np.testing.assert_allclose(host(Adam(_Model(), None)._update(w, dw, None, lr=1e-2)[0]), expected, rtol=1e-12)


class _Model:
    """A model without parameters (Adam's _update does not look at it)."""

    def __init__(self):
        self.params = {}


@pytest.mark.parametrize("optimizer_cls", [SGD, SGDMomentum, Adam])
def test_optimizer_step_trains_a_classification_net(optimizer_cls, put, host):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((40, 6))
    y = (X[:, 0] > 0).astype(np.int64)
    np.random.seed(0)
    model = ClassificationNet(activation=Relu(), num_layer=2, input_size=6, hidden_size=16, std=0.3, num_classes=2)
    for k in model.params:
        model.params[k] = put(host(model.params[k]))
    loss_fn = CrossEntropyFromLogits()
    opt = optimizer_cls(model, loss_fn, learning_rate=0.1 if optimizer_cls is not Adam else 0.05)
    first = loss_fn(model.forward(put(X)), put(y))
    for _ in range(30):
        opt.backward(model.forward(put(X)), put(y))
        opt.step()
    assert loss_fn(model.forward(put(X)), put(y)) < 0.5 * first
    assert all(g == 0.0 for g in model.grads.values())  # step() resets the gradients


# --- the batchnorm/dropout exercise ------------------------------------------------------------


def test_dropout_p_is_the_drop_probability(put, host):
    x = np.random.default_rng(9).standard_normal((200, 500)) + 10
    for p in (0.3, 0.6, 0.75):
        out, _ = bn_layers.dropout_forward(put(x), {"mode": "train", "p": p, "seed": 123})
        out = host(out)
        assert abs((out == 0).mean() - p) < 0.01  # 100000 draws: 5 sigma is about 0.008
        kept = out != 0
        np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
        again, _ = bn_layers.dropout_forward(put(x), {"mode": "train", "p": p, "seed": 123})
        np.testing.assert_array_equal(host(again), out)  # the seed fixes the mask
    out, _ = bn_layers.dropout_forward(put(x), {"mode": "train", "p": 0.0})
    np.testing.assert_array_equal(host(out), x)
    np.testing.assert_array_equal(host(bn_layers.dropout_forward(put(x), {"mode": "test", "p": 0.5})[0]), x)
    with pytest.raises(ValueError, match=r"dropout_param\['p'\] \(the drop probability\) must be a finite number "
                                         r"in \[0.0, 1.0\)"):
        bn_layers.dropout_forward(put(x), {"mode": "train", "p": 1.0})


def test_dropout_backward_numeric(put):
    x = np.random.default_rng(10).standard_normal((10, 10)) + 10
    dout = np.random.default_rng(11).standard_normal((10, 10))
    param = {"mode": "train", "p": 0.8, "seed": 123}
    _, cache = bn_layers.dropout_forward(put(x), param)
    num = _numeric(lambda a: bn_layers.dropout_forward(a, param)[0], x, dout)
    assert rel_error(bn_layers.dropout_backward(put(dout), cache), num) < 1e-10


def test_batchnorm_running_statistics_start_at_zero(put, host):
    x = np.random.default_rng(12).standard_normal((50, 3)) * [1.0, 2.0, 3.0] + [4.0, 5.0, 6.0]
    bn_param = {"mode": "train", "momentum": 0.9}
    bn_layers.batchnorm_forward(put(x), put(np.ones(3)), put(np.zeros(3)), bn_param)
    np.testing.assert_allclose(host(bn_param["running_mean"]), 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(host(bn_param["running_var"]), 0.1 * x.var(axis=0), rtol=1e-12)
