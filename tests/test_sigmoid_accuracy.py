"""Sigmoid is accurate relative to its value on both tails, on every backend, and that
accuracy reaches bce_with_logits_loss's gradient and LogisticClassifier.predict_proba.

Reference: 1 / (1 + exp(-x)) evaluated with 50 significant digits (mpmath), so the
relative error of every result can be measured down to the dtype's own rounding.
"""

import warnings

import numpy as np
import pytest

import gpunet
from gpunet import layers as L
from gpunet import losses
from gpunet.backend import get_ops
from gpunet.backend.ops import Ops
from gpunet.models import LogisticClassifier

mpmath = pytest.importorskip("mpmath")
mpmath.mp.dps = 50

#: Most relative error allowed, in units of the dtype's machine epsilon: e = exp(-|x|),
#: 1 + e and the division each round once (about 1.5 eps), plus the libm's exp error.
EPS_UNITS = 3


def exact_sigmoid(x) -> np.ndarray:
    """sigmoid of each float in x, correctly rounded to float64 (then to x's dtype)."""
    flat = [float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in np.ravel(x)]
    return np.array(flat).reshape(np.shape(x))


def grid(dtype) -> np.ndarray:
    """Both tails down to the smallest normal result, and around 0."""
    lo = float(np.log(np.finfo(dtype).smallest_normal)) + 1  # sigmoid(lo) is still normal
    x = np.concatenate([np.linspace(lo, -lo, 801), np.linspace(-3, 3, 121), [-40, -30, -20, -19, -17, 17, 40]])
    return x.astype(dtype)


def relative_error(got, x) -> np.ndarray:
    want = exact_sigmoid(x)
    return np.abs(np.asarray(got, np.float64) - want) / want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_accurate_relative_to_its_value(dtype, put, host):
    x = grid(dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y, _ = L.sigmoid_forward(put(x))
    err = relative_error(host(y), x)
    assert err.max() <= EPS_UNITS * np.finfo(dtype).eps, f"worst at x = {x[np.argmax(err)]}: {err.max():.2e}"


def test_the_values_of_the_issue(put, host):
    """float32 sigmoid(-17) = 4.14e-08 (the tanh form gave 5.96e-08), -20 and -40 are
    not 0; float64 sigmoid(-30) to its last bits and sigmoid(-40) = 4.25e-18."""
    got32 = host(L.sigmoid_forward(put(np.array([-17.0, -20.0, -40.0], np.float32)))[0])
    np.testing.assert_allclose(got32, np.array([4.139938e-08, 2.0611537e-09, 4.248354e-18], np.float32), rtol=2e-7)
    got64 = host(L.sigmoid_forward(put(np.array([-30.0, -40.0])))[0])
    np.testing.assert_allclose(got64, exact_sigmoid([-30.0, -40.0]), rtol=4e-16)
    assert abs(got64[1] - 4.248354255291589e-18) < 1e-30


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_special_values(dtype, backend, put, host):
    if backend == "strict" and dtype == np.float16:
        pytest.skip("array_api_strict has no float16")
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = host(L.sigmoid_forward(put(x))[0])
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.array([0.0, 1.0, np.nan, 0.5, 0.5, 1.0, 0.0], dtype))


def test_numpy_and_the_generic_ops_agree_bit_for_bit():
    x = np.concatenate([grid(np.float32), -grid(np.float32)])
    np.testing.assert_array_equal(get_ops(np).sigmoid(x), Ops(np).sigmoid(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_gradient_in_the_left_tail(dtype, put, host):
    """dx = sigmoid(x) - y: with y = 0 it is sigmoid(x), accurate where the tanh form was off
    by a factor of 5 (float32, x = -19)."""
    x = np.array([-19.0, -25.0, -35.0], dtype)
    _, dx = losses.bce_with_logits_loss(put(x), put(np.zeros(3, dtype)), reduction="sum")
    assert relative_error(host(dx), x).max() <= EPS_UNITS * np.finfo(dtype).eps


def test_logistic_classifier_probabilities_in_the_left_tail(backend, host):
    model = LogisticClassifier(1, dtype=np.float32, seed=0)
    model.params["W"] = gpunet.asarray(np.ones((1, 1), np.float32))
    model.params["b"] = gpunet.asarray(np.zeros(1, np.float32))
    x = np.array([[-17.0], [-30.0], [5.0]], np.float32)
    p = host(model.predict_proba(gpunet.asarray(x)))
    assert relative_error(p, x[:, 0]).max() <= EPS_UNITS * np.finfo(np.float32).eps
