"""nn layer constructors: every bad argument is a clear error naming the layer and the
argument (generated with hypothesis); NumPy scalars work wherever Python numbers do."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet import nn
from gpunet._validate import ArgumentError

FAST = settings(max_examples=40, deadline=None)

# Values that are never an int, a real, a probability or a dtype.
NOT_A_NUMBER = st.sampled_from([None, True, False, "3", [3], (), {}, object(), np.bool_(True), 1 + 2j])
NOT_AN_INT = NOT_A_NUMBER | st.floats(allow_nan=True, allow_infinity=True) | st.just(np.float32(2.0))
NOT_A_REAL = NOT_A_NUMBER | st.just(math.nan) | st.just(np.float32("nan")) | st.just(math.inf)


def ints_below(low):
    return st.integers(max_value=low - 1) | st.integers(-2**63, low - 1).map(np.int64)


def reals_outside(low, high=None, low_open=False):
    """Finite Python and float32 numbers below ``low`` (or equal to it if ``low_open``) or above ``high``."""
    def floats(width):
        below = st.floats(max_value=low, exclude_max=not low_open, allow_infinity=False, width=width)
        above = st.nothing() if high is None else st.floats(min_value=high, exclude_min=True,
                                                             allow_infinity=False, width=width)
        return below | above

    return floats(64) | floats(32).map(np.float32)


# (constructor, valid keyword arguments, the argument to spoil, bad values)
CASES = [
    (nn.Linear, {"in_features": 3, "out_features": 2}, "in_features", ints_below(1) | NOT_AN_INT),
    (nn.Linear, {"in_features": 3, "out_features": 2}, "out_features", ints_below(1) | NOT_AN_INT),
    (nn.Linear, {"in_features": 3, "out_features": 2}, "init",
     reals_outside(0.0) | st.sampled_from(["kaiming", "", None, math.nan, [0.1]])),
    (nn.Linear, {"in_features": 3, "out_features": 2}, "dtype",
     st.sampled_from(["int32", "bool", "bogus", None, int, np.complex64, "float128", 3])),
    (nn.Linear, {"in_features": 3, "out_features": 2}, "rng", ints_below(0) | st.sampled_from(["abc", 1.5, True])),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "in_channels", ints_below(1) | NOT_AN_INT),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "out_channels", ints_below(1) | NOT_AN_INT),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "kernel_size",
     ints_below(1) | NOT_AN_INT | st.sampled_from([(3,), (3, 0), (3, 3, 3), (3, 2.0), (-1, 2)])),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "stride",
     ints_below(1) | NOT_AN_INT | st.sampled_from([(1,), (1, 0), (2, 1.5)])),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "pad",  # pad=None: not given (0)
     ints_below(0) | NOT_AN_INT.filter(lambda v: v is not None) | st.sampled_from([(1,), (0, -1), (1, None)])),
    (nn.Conv2d, {"in_channels": 1, "out_channels": 2, "kernel_size": 3}, "padding",
     ints_below(0) | NOT_AN_INT.filter(lambda v: v is not None) | st.sampled_from([(1,), (0, -1), (1, None)])),
    (nn.MaxPool2d, {"kernel_size": 2}, "kernel_size", ints_below(1) | NOT_AN_INT | st.sampled_from([(2,), (0, 2)])),
    (nn.MaxPool2d, {"kernel_size": 2}, "stride", ints_below(1) | st.sampled_from([1.5, "2", (2,), (1, 0)])),
    (nn.AvgPool2d, {"kernel_size": 2}, "kernel_size", ints_below(1) | NOT_AN_INT),
    (nn.LeakyReLU, {}, "negative_slope", reals_outside(0.0) | NOT_A_REAL),
    (nn.BatchNorm, {"num_features": 3}, "num_features", ints_below(1) | NOT_AN_INT),
    (nn.BatchNorm, {"num_features": 3}, "momentum", reals_outside(0.0, 1.0) | NOT_A_REAL),
    (nn.BatchNorm, {"num_features": 3}, "eps", reals_outside(0.0, low_open=True) | NOT_A_REAL),
    (nn.BatchNorm, {"num_features": 3}, "dtype", st.sampled_from(["int64", "bogus", None])),
    (nn.LayerNorm, {"num_features": 3}, "num_features", ints_below(1) | NOT_AN_INT),
    (nn.LayerNorm, {"num_features": 3}, "eps", reals_outside(0.0, low_open=True) | NOT_A_REAL),
    (nn.Dropout, {}, "keep_prob", reals_outside(0.0, 1.0, low_open=True) | NOT_A_REAL),
    (nn.Dropout, {}, "rng", ints_below(0) | st.sampled_from(["abc", 0.5])),
]


@pytest.mark.parametrize("make,valid,arg,bad", CASES, ids=[f"{c[0].__name__}-{c[2]}" for c in CASES])
def test_bad_constructor_argument_is_an_error_naming_layer_and_argument(make, valid, arg, bad):
    make(**valid)  # the valid call works

    @FAST
    @given(value=bad)
    def check(value):
        with pytest.raises(ArgumentError, match=rf"^{make.__name__}: {arg} must be .*, got "):
            make(**{**valid, arg: value})

    check()


@pytest.mark.parametrize("call,message", [
    (lambda: nn.Linear(0, 3), "Linear: in_features must be an int >= 1, got 0"),
    (lambda: nn.Linear(-1, 3), "Linear: in_features must be an int >= 1, got -1"),
    (lambda: nn.Linear(3.5, 3), "Linear: in_features must be an int >= 1, got 3.5"),
    (lambda: nn.Conv2d(1, 2, 0), "Conv2d: kernel_size must be an int >= 1 or a pair of ints >= 1 (h, w), got 0"),
    (lambda: nn.Conv2d(1, 2, (3,)), "Conv2d: kernel_size must be an int >= 1 or a pair of ints >= 1 (h, w), got (3,)"),
    (lambda: nn.Conv2d(1, 2, 3, stride=0), "Conv2d: stride must be an int >= 1"),
    (lambda: nn.Conv2d(1, 2, 3, pad=-1), "Conv2d: pad must be an int >= 0"),
    (lambda: nn.BatchNorm(0), "BatchNorm: num_features must be an int >= 1, got 0"),
    (lambda: nn.BatchNorm(3, eps=-1e-5), "BatchNorm: eps must be a finite number > 0.0"),
    (lambda: nn.BatchNorm(3, momentum=5), "BatchNorm: momentum must be a finite number in [0.0, 1.0], got 5"),
    (lambda: nn.Dropout(1.5), "Dropout: keep_prob must be a finite number in (0.0, 1.0], got 1.5"),
    (lambda: nn.LeakyReLU(math.nan), "LeakyReLU: negative_slope must be a finite number >= 0.0, got nan"),
    (lambda: nn.MaxPool2d(0), "MaxPool2d: kernel_size must be an int >= 1"),
    (lambda: nn.Linear(3, 2, rng=-1), "Linear: rng must be None, an int >= 0 or a numpy.random.Generator, got -1"),
    (lambda: nn.Linear(3, 2, dtype="int32"), "Linear: dtype must be a floating dtype"),
    (lambda: nn.Dropout(p=1.5), "Dropout: p must be a finite number in [0.0, 1.0)"),
    (lambda: nn.Classifier(nn.Linear(3, 2), loss="hinge"), "Classifier: loss must be one of 'softmax', 'svm'"),
    (lambda: nn.Classifier(nn.Linear(3, 2), reg=math.nan), "Classifier: reg must be a finite number >= 0.0"),
    (lambda: nn.Classifier(nn.Linear(3, 2), seed="abc"), "seed must be None, an int >= 0"),
    (lambda: nn.Sequential(nn.ReLU()).train("eval"), "Sequential.train: mode must be True or False, got 'eval'"),
])
def test_the_issues_bad_constructors(call, message):
    with pytest.raises(ArgumentError) as err:
        call()
    assert str(err.value).startswith(message), str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


def test_numpy_scalars_work_wherever_python_numbers_do(host):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    conv = nn.Conv2d(np.int64(1), np.int32(2), np.int64(3), stride=np.int64(1), pad=(np.int32(1), np.int64(1)), rng=0)
    ref = nn.Conv2d(1, 2, 3, stride=1, pad=1, rng=0)
    np.testing.assert_array_equal(conv(x), ref(x))
    pool = nn.MaxPool2d(np.int64(2), stride=np.int32(2))
    np.testing.assert_array_equal(pool(x), x.reshape(2, 1, 2, 2, 2, 2).max(axis=(3, 5)))
    lin = nn.Linear(np.int64(16), np.int16(3), init=np.float32(0.5), rng=np.int64(1))
    assert lin.W.shape == (16, 3) and type(lin.in_features) is int
    np.testing.assert_array_equal(lin.W, nn.Linear(16, 3, init=0.5, rng=1).W)
    leaky = nn.LeakyReLU(np.float32(0.25))
    np.testing.assert_allclose(leaky(np.array([-2.0, 3.0], np.float32)), [-0.5, 3.0])
    bn = nn.BatchNorm(np.int64(16), momentum=np.float32(0.5), eps=np.float64(1e-3))
    flat = x.reshape(2, 16)
    out = bn(flat)
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean, 0.5 * flat.mean(0), rtol=1e-6)
    drop = nn.Dropout(np.float32(0.5), rng=np.int64(3))
    kept = drop(np.ones((100, 100), np.float32))
    assert set(np.unique(kept)) == {0.0, 2.0} and abs((kept > 0).mean() - 0.5) < 0.03
