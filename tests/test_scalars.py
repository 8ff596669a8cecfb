"""0-d arrays (scalars) through the functions course code calls on them: sigmoid forward
and backward (CS231n/I2DL tests call ``sigmoid(0)`` and ``sigmoid(100)``),
bce_with_logits_loss, and the sgd, sgd_momentum, adam and adamw updates of a 0-d
parameter. Each result is a 0-d array of the input's dtype, checked against the update
rule or formula written out in Python floats."""

import math

import numpy as np
import pytest
from tolerances import assert_close

from gpunet import layers as L
from gpunet import losses, optim


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def _is_0d(a, host, dtype=np.float64) -> None:
    got = host(a)
    assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == dtype


@pytest.mark.parametrize("value", [0.0, 100.0, -100.0, 2.5])
def test_sigmoid_of_a_0d_array(value, put, host):
    y, cache = L.sigmoid_forward(put(np.array(value)))
    _is_0d(y, host)
    assert_close(y, _sigmoid(value))
    dx = L.sigmoid_backward(put(np.array(3.0)), cache)
    _is_0d(dx, host)
    assert_close(dx, 3.0 * _sigmoid(value) * (1 - _sigmoid(value)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_of_0d_arrays(reduction, put, host):
    x, t = 0.7, 0.25
    loss, dx = losses.bce_with_logits_loss(put(np.array(x)), put(np.array(t)), reduction=reduction)
    _is_0d(loss, host)
    _is_0d(dx, host)
    assert_close(loss, -(t * math.log(_sigmoid(x)) + (1 - t) * math.log(1 - _sigmoid(x))))
    assert_close(dx, _sigmoid(x) - t)


W, DW, LR = 1.5, -0.4, 0.1


def _adam_reference(decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8):
    w = W * (1 - LR * decay)
    m, v = (1 - beta1) * DW, (1 - beta2) * DW * DW
    return w - LR * (m / (1 - beta1)) / (math.sqrt(v / (1 - beta2)) + eps)


@pytest.mark.parametrize("rule,config,expected", [
    ("sgd", {"learning_rate": LR}, W - LR * DW),
    ("sgd_momentum", {"learning_rate": LR, "momentum": 0.9}, W - LR * DW),  # v = -lr*dw at the first step
    ("adam", {"learning_rate": LR}, _adam_reference()),
    ("adamw", {"learning_rate": LR, "weight_decay": 0.1}, _adam_reference(decay=0.1)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_of_a_0d_parameter(rule, config, expected, dtype, put, host):
    w = put(np.array(W, dtype))
    next_w, config = optim.UPDATE_RULES[rule](w, put(np.array(DW, dtype)), dict(config))
    _is_0d(next_w, host, dtype)
    assert_close(next_w, expected)
    for key in ("velocity", "m", "v"):
        if key in config:
            _is_0d(config[key], host, dtype)
    next_w, _ = optim.UPDATE_RULES[rule](next_w, put(np.array(DW, dtype)), config)  # a second step runs too
    _is_0d(next_w, host, dtype)
