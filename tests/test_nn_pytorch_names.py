"""What PyTorch users type works: Conv2d(..., padding=1), bias=False, model(X); and a
gradient check in float32 warns that its numbers mean nothing (references: loop
convolution, matrix products and numeric gradients in float64)."""

import warnings

import numpy as np
import pytest
from naive import conv_forward as conv_reference
from tolerances import GRAD_REL_ERROR

import gpunet
from gpunet import nn
from gpunet._validate import ArgumentError
from gpunet.gradcheck import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
    rel_error,
)


def test_conv2d_takes_pytorchs_padding_name(backend, put, host):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dtype="float64", rng=0)
    assert conv.conv_param["pad"] == (1, 2)
    expected = conv_reference(x, host(conv.W), host(conv.b), (2, 1), (1, 2))
    np.testing.assert_allclose(host(conv(put(x))), expected, rtol=1e-12, atol=1e-12)
    same = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), pad=(1, 2), dtype="float64", rng=0)
    np.testing.assert_array_equal(host(same(put(x))), host(conv(put(x))))
    assert nn.Conv2d(1, 16, 3, padding=1).conv_param["pad"] == (1, 1)  # the line
    assert nn.Conv2d(1, 16, 3).conv_param["pad"] == (0, 0)  # neither: no padding


@pytest.mark.parametrize("pad", [0, 1])
def test_conv2d_refuses_pad_and_padding_together(pad):
    with pytest.raises(ArgumentError, match=rf"Conv2d: got pad={pad} and padding=1; .*give one"):
        nn.Conv2d(1, 2, 3, pad=pad, padding=1)
    with pytest.raises(ArgumentError, match=r"Conv2d: padding must be an int >= 0 .*got -1"):
        nn.Conv2d(1, 2, 3, padding=-1)


def _numeric(layer, x, dout, attr):
    """Numeric gradient of sum(layer(x) * dout) with respect to ``layer.<attr>`` (or x)."""
    target = x if attr == "x" else getattr(layer, attr)
    return eval_numerical_gradient_array(lambda _: layer.forward(x), target, dout)


@pytest.mark.parametrize("make,x_shape", [
    (lambda: nn.Linear(5, 3, bias=False, dtype="float64", rng=1), (4, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype="float64", rng=1), (2, 2, 4, 4)),
])
def test_layers_without_bias(make, x_shape, backend, put, host):
    layer = make()
    assert layer.b is None and list(layer.params) == ["W"] and "bias=False" in repr(layer)
    x0 = np.random.default_rng(2).standard_normal(x_shape)
    W = host(layer.W)
    expected = x0 @ W if W.ndim == 2 else conv_reference(x0, W, np.zeros(W.shape[0]), (1, 1), (1, 1))
    x = put(x0)
    out = layer(x)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    dout = put(np.random.default_rng(3).standard_normal(out.shape))
    layer.forward(x)
    dx = layer.backward(dout)
    assert set(layer.grads) == {"W"}
    assert rel_error(layer.grads["W"], _numeric(layer, x, dout, "W")) < GRAD_REL_ERROR
    assert rel_error(dx, _numeric(layer, x, dout, "x")) < GRAD_REL_ERROR


def test_a_classifier_without_biases_has_matching_params_and_grads():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False, rng=0), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 4 * 4, 3, bias=False, rng=1))
    model = nn.Classifier(net, reg=0.1)
    X = np.random.default_rng(4).standard_normal((5, 1, 4, 4)).astype(np.float32)
    _, grads = model.loss(X, np.array([0, 1, 2, 0, 1]))
    assert sorted(grads) == sorted(model.params) == ["0.W", "3.W"]
    assert model.reg_names == ("0.W", "3.W")


def test_bias_must_be_a_bool():
    with pytest.raises(ArgumentError, match="Linear: bias must be True or False, got 0"):
        nn.Linear(2, 2, bias=0)
    with pytest.raises(ArgumentError, match="Conv2d: bias must be True or False, got 'no'"):
        nn.Conv2d(1, 2, 3, bias="no")


def test_modules_and_models_are_callable():
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    net = nn.Sequential(nn.Linear(4, 5, rng=0), nn.ReLU(), nn.Dropout(0.5, rng=0), nn.Linear(5, 3, rng=1))
    net.eval()
    np.testing.assert_array_equal(net(x), net.forward(x))
    relu = nn.ReLU()
    np.testing.assert_array_equal(relu(x), np.maximum(x, 0))
    model = nn.Classifier(net.train())
    np.testing.assert_array_equal(model(x), net.eval().forward(x))  # scores in eval mode


# --- gradient checks in low precision ------------------------------------------------------


CHECKS = {
    "eval_numerical_gradient": lambda x: eval_numerical_gradient(lambda v: (v * v).sum(), x, verbose=False),
    "eval_numerical_gradient_array": lambda x: eval_numerical_gradient_array(lambda v: v * 2, x, np.ones(x.shape)),
    "grad_check_sparse": lambda x: grad_check_sparse(lambda v: (v * v).sum(), x, 2 * x, num_checks=2, verbose=False),
}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gradient_checks_warn_on_low_precision(check, dtype):
    x = np.linspace(-1, 1, 6, dtype=dtype)
    with pytest.warns(UserWarning, match=rf"gradient check on a {np.dtype(dtype).name} array.*float64") as record:
        CHECKS[check](x)
    assert record[0].filename == __file__  # points at the caller's line


def test_gradient_checks_warn_for_device_arrays_too(backend, put):
    with pytest.warns(UserWarning, match="gradient check on a float32 array"):
        eval_numerical_gradient_array(lambda v: v * 2, put(np.ones(3), dtype="float32"), np.ones(3))


@pytest.mark.parametrize("check", CHECKS)
def test_float64_gradient_checks_do_not_warn(check):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CHECKS[check](np.linspace(-1, 1, 6))


def test_the_warning_is_right_float32_numbers_are_meaningless():
    """What the warning says, measured: the float32 numeric gradient of sum(x**2) is far off."""
    x = np.linspace(0.1, 1, 5, dtype=np.float32)
    with pytest.warns(UserWarning):
        numeric = eval_numerical_gradient(lambda v: (v * v).sum(), x, verbose=False)
    assert rel_error(numeric, 2 * x.astype(np.float64)) > 1e-3
    assert gpunet.gradcheck.rel_error(
        eval_numerical_gradient(lambda v: (v * v).sum(), x.astype(np.float64), verbose=False), 2 * x) < 1e-9
