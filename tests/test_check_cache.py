"""Checks cached per shape and parameters never skip a check that could fail: after a
call passed, every value that the full check refuses is still refused (bool for int,
NaN, out of range, unknown keys), and the fast paths of the array checks refuse what
the full checks refuse."""

import math

import numpy as np
import pytest

from gpunet import _validate, optim
from gpunet import layers as L
from gpunet._validate import ArgumentError


def test_memo_key_tells_apart_what_compares_equal():
    values = [1, 1.0, True, np.int64(1), np.float32(1), (1, 1), [1, 1], (1, True), {"a": 1}, {"a": True}]
    keys = [_validate.memo_key(v) for v in values]
    assert len(set(keys)) == len(values)
    assert _validate.memo_key({"stride": [1, 2]}) == _validate.memo_key({"stride": [1, 2]})
    assert _validate.memo_key({"w": np.zeros(2)}) is None and _validate.memo_key([{}, [set()]]) is None


def test_cached_keeps_only_passed_checks():
    cache, calls = {}, []

    def check():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return "ok"

    with pytest.raises(ValueError):
        _validate.cached(cache, "k", check)
    assert _validate.cached(cache, "k", check) == "ok" and _validate.cached(cache, "k", check) == "ok"
    assert len(calls) == 2
    assert _validate.cached(cache, None, check) == "ok" and len(calls) == 3  # None: never cached


@pytest.mark.parametrize("bad", [{"stride": True}, {"stride": (1, True)}, {"stride": 0}, {"pad": -1},
                                 {"stride": 1.0}, {"strides": 1}, {"dilation": np.bool_(True)}])
def test_conv_checks_after_a_cached_success(bad):
    x, w, b = np.ones((2, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.ones(2)
    L.conv_forward(x, w, b, {"stride": 1, "pad": 0, "dilation": 1})
    L.conv_forward(x, w, b, {"stride": np.int64(1), "pad": [0, 0]})  # other spellings of a valid value
    with pytest.raises(ArgumentError, match="conv_forward"):
        L.conv_forward(x, w, b, {"stride": 1, "pad": 0, "dilation": 1, **bad})


@pytest.mark.parametrize("bad", [{"pool_height": True}, {"stride": (2, True)}, {"pool_width": 9}, {"size": 2},
                                 {"pool_height": 2.0}])
def test_pool_checks_after_a_cached_success(bad):
    x = np.ones((1, 1, 4, 4))
    L.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ArgumentError, match="max_pool_forward"):
        L.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2, **bad})


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "adam"])
@pytest.mark.parametrize("key,bad", [("learning_rate", -1.0), ("learning_rate", math.nan), ("learning_rate", True),
                                     ("learning_rate", math.inf), ("lr", 0.1), ("momentum", 1.0)])
def test_optimizer_config_checked_after_a_cached_success(rule, key, bad):
    w, dw = np.ones(3), np.ones(3)
    config = {"learning_rate": 1e-2}
    update = optim.UPDATE_RULES[rule]
    for _ in range(2):
        update(w, dw, config)
    if key == "momentum" and rule != "sgd_momentum":
        key = "beta1"  # a hyperparameter of the rule in [0, 1)
    config[key] = bad
    with pytest.raises(ValueError):
        update(w, dw, config)


@pytest.mark.parametrize("t", [-1, 1.5, True, None])
def test_adam_step_count_is_checked_every_step(t):
    w, dw = np.ones(3), np.ones(3)
    config = {"learning_rate": 1e-3}
    optim.adam(w, dw, config)
    config["t"] = t
    with pytest.raises(ValueError, match="Adam's step count"):
        optim.adam(w, dw, config)


def test_float_inputs_fast_path_refuses_what_the_full_check_refuses():
    f32, f64 = np.ones(2, np.float32), np.ones(2)
    assert _validate.float_inputs("f", a=f32, b=f32) is np
    with pytest.raises(ArgumentError, match="share one dtype"):
        _validate.float_inputs("f", a=f32, b=f64)
    with pytest.raises(ArgumentError, match="real floating"):
        _validate.float_inputs("f", a=np.ones(2, np.int64))
    with pytest.raises(ArgumentError, match="real floating"):
        _validate.float_inputs("f", a=np.ones(2, np.complex64))
    with pytest.raises(TypeError, match="convert it with gpunet.asarray"):
        _validate.float_inputs("f", a=f64, b=[1.0])
