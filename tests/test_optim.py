"""Update rules against plain step-by-step NumPy references, on every backend."""

import math

import numpy as np
import pytest
from tolerances import tol

import gpunet
from gpunet import optim
from gpunet.backend import backend_of

STEPS = 5


# --- references: the textbook formulas, one step at a time, float64 NumPy -----------------


def ref_sgd(w, dws, lr=1e-2):
    for dw in dws:
        w = w - lr * dw
    return w, {}


def ref_sgd_momentum(w, dws, lr=1e-2, mu=0.9):
    v = np.zeros_like(w)
    for dw in dws:
        v = mu * v - lr * dw
        w = w + v
    return w, {"velocity": v}


def ref_nesterov(w, dws, lr=1e-2, mu=0.9):
    v = np.zeros_like(w)
    for dw in dws:
        v_prev = v
        v = mu * v - lr * dw
        w = w - mu * v_prev + (1 + mu) * v
    return w, {"velocity": v}


def ref_rmsprop(w, dws, lr=1e-2, decay=0.99, eps=1e-8):
    cache = np.zeros_like(w)
    for dw in dws:
        cache = decay * cache + (1 - decay) * dw**2
        w = w - lr * dw / (np.sqrt(cache) + eps)
    return w, {"cache": cache}


def ref_adam(w, dws, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, dw in enumerate(dws, start=1):
        w = w - lr * wd * w
        m = b1 * m + (1 - b1) * dw
        v = b2 * v + (1 - b2) * dw**2
        mt, vt = m / (1 - b1**t), v / (1 - b2**t)
        w = w - lr * mt / (np.sqrt(vt) + eps)
    return w, {"m": m, "v": v, "t": len(dws)}


def ref_adamw(w, dws, lr=1e-3, wd=1e-2, **kw):
    return ref_adam(w, dws, lr=lr, wd=wd, **kw)


REFS = {
    "sgd": (ref_sgd, {"learning_rate": 0.1}, {"lr": 0.1}),
    "sgd_momentum": (ref_sgd_momentum, {"learning_rate": 0.05, "momentum": 0.8},
                     {"lr": 0.05, "mu": 0.8}),
    "nesterov": (ref_nesterov, {"learning_rate": 0.05, "momentum": 0.7}, {"lr": 0.05, "mu": 0.7}),
    "rmsprop": (ref_rmsprop, {"learning_rate": 0.02, "decay_rate": 0.9, "epsilon": 1e-6},
                {"lr": 0.02, "decay": 0.9, "eps": 1e-6}),
    "adam": (ref_adam, {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99},
             {"lr": 0.01, "b1": 0.8, "b2": 0.99}),
    "adamw": (ref_adamw, {"learning_rate": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "wd": 0.1}),
}


def _problem(rng, shape=(4, 5)):
    w = rng.normal(size=shape)
    dws = [rng.normal(size=shape) for _ in range(STEPS)]
    return w, dws


@pytest.mark.parametrize("rule", sorted(REFS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rule_matches_reference(backend, put, host, rng, rule, dtype):
    ref, config, ref_kw = REFS[rule]
    w0, dws = _problem(rng)
    expected, expected_state = ref(w0, dws, **ref_kw)

    w = put(w0.copy(), dtype)
    cfg = dict(config)
    for dw in dws:
        out, cfg = optim.UPDATE_RULES[rule](w, put(dw, dtype), cfg)
        assert out is w  # in place, CS231n's return convention
    t = tol(dtype)
    np.testing.assert_allclose(host(w), expected, rtol=t["rtol"] * 10, atol=t["atol"] * 10)
    assert host(w).dtype == np.dtype(dtype)
    for key, value in expected_state.items():
        if key == "t":
            assert type(cfg["t"]) is int and cfg["t"] == value
        else:
            assert backend_of(cfg[key]) == backend
            np.testing.assert_allclose(host(cfg[key]), value,
                                       rtol=t["rtol"] * 10, atol=t["atol"] * 10)


@pytest.mark.parametrize("rule", sorted(REFS))
def test_defaults_are_cs231n(backend, put, host, rng, rule):
    ref = REFS[rule][0]
    w0, dws = _problem(rng, (3,))
    expected_w = ref(w0, dws)[0]
    w = put(w0.copy())  # put() need not copy on NumPy; the rule updates in place
    cfg = None
    for dw in dws:
        w, cfg = optim.UPDATE_RULES[rule](w, put(dw), cfg)
    np.testing.assert_allclose(host(w), expected_w, **tol("float64"))
    expected = {
        "sgd": {"learning_rate": 1e-2},
        "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
        "nesterov": {"learning_rate": 1e-2, "momentum": 0.9},
        "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
        "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        "adamw": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
                  "weight_decay": 1e-2},
    }[rule]
    assert {k: cfg[k] for k in expected} == expected


def test_state_is_per_call_config_not_shared(put):
    """Two parameters with separate configs keep separate velocities."""
    a, b = put(np.ones(3)), put(np.ones(3))
    ca, cb = {}, {}
    optim.sgd_momentum(a, put(np.full(3, 1.0)), ca)
    optim.sgd_momentum(b, put(np.full(3, -2.0)), cb)
    assert ca["velocity"] is not cb["velocity"]
    np.testing.assert_allclose(gpunet.to_numpy(ca["velocity"]), -0.01)
    np.testing.assert_allclose(gpunet.to_numpy(cb["velocity"]), 0.02)


def test_adam_step_counter_is_python_int_and_resumes(put, host, rng):
    """Continuing from a saved config (t, m, v) gives the same result as one long run."""
    w0, dws = _problem(rng)
    w1 = put(w0.copy())
    cfg1 = {}
    for dw in dws:
        optim.adam(w1, put(dw), cfg1)
    w2 = put(w0.copy())
    cfg2 = {}
    for dw in dws[:2]:
        optim.adam(w2, put(dw), cfg2)
    cfg2 = {"t": cfg2["t"], "m": put(host(cfg2["m"])), "v": put(host(cfg2["v"]))}
    for dw in dws[2:]:
        optim.adam(w2, put(dw), cfg2)
    assert type(cfg2["t"]) is int and cfg2["t"] == STEPS
    np.testing.assert_array_equal(host(w1), host(w2))


@pytest.mark.parametrize("rule", ["sgd_momentum", "adam", "adamw"])
def test_fused_primitives_are_used(monkeypatch, rule):
    """sgd_momentum and adam go through get_ops(xp) so CuPy's fused kernels run."""
    calls = []
    real = optim.get_ops

    class Recorder:
        def __init__(self, ops):
            self.ops = ops

        def __getattr__(self, name):
            calls.append(name)
            return getattr(self.ops, name)

    monkeypatch.setattr(optim, "get_ops", lambda xp: Recorder(real(xp)))
    getattr(optim, rule)(np.zeros(2), np.ones(2), {})
    assert calls == ["sgd_momentum" if rule == "sgd_momentum" else "adam"]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(REFS))
def test_unknown_key_raises_listing_accepted_keys(rule):
    with pytest.raises(ValueError, match="accepted keys") as info:
        optim.UPDATE_RULES[rule](np.zeros(2), np.ones(2), {"lr": 0.1})
    assert "learning_rate" in str(info.value)
    assert "did you mean 'learning_rate'" in str(info.value)


def test_weight_decay_on_adam_points_to_adamw():
    with pytest.raises(ValueError, match="adamw"):
        optim.adam(np.zeros(2), np.ones(2), {"weight_decay": 0.1})


@pytest.mark.parametrize("key,value", [
    ("learning_rate", -1.0), ("learning_rate", math.nan), ("momentum", 1.0),
    ("epsilon", 0.0), ("beta2", 1.5),
])
def test_out_of_range_hyperparameters_raise(key, value):
    rule = {"momentum": "sgd_momentum", "epsilon": "adam", "beta2": "adam"}.get(key, "sgd")
    with pytest.raises(ValueError, match=key):
        optim.UPDATE_RULES[rule](np.zeros(2), np.ones(2), {key: value})


@pytest.mark.parametrize("value", [np.array([0.1]), "0.1", None, True, math.inf])
def test_non_scalar_learning_rate_raises(value):
    with pytest.raises(TypeError, match=r"optim_config\['learning_rate'\] must be a finite number >= 0.0"):
        optim.sgd(np.zeros(2), np.ones(2), {"learning_rate": value})


@pytest.mark.parametrize("t", [-1, 1.5, True, "3", None])
def test_adam_step_count_must_be_an_int_at_least_zero(t):
    with pytest.raises(ValueError, match=r"optim_config\['t'\] \(Adam's step count\) must be an int >= 0"):
        optim.adam(np.zeros(2), np.ones(2), {"t": t})


def test_numpy_scalars_are_accepted_as_hyperparameters_and_step_count():
    w = np.ones(3)
    config = {"learning_rate": np.float32(0.5), "beta1": np.float64(0.8), "t": np.int64(4)}
    optim.adam(w, np.ones(3), config)
    ref = np.ones(3)
    optim.adam(ref, np.ones(3), {"learning_rate": 0.5, "beta1": 0.8, "t": 4})
    np.testing.assert_array_equal(w, ref)
    assert config["t"] == 5 and type(config["t"]) is int


def test_gradient_shape_and_dtype_mismatch_raise():
    with pytest.raises(ValueError, match=r"gradient shape \(3,\).*\(2,\)"):
        optim.sgd(np.zeros(2), np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        optim.sgd(np.zeros(2, np.float32), np.ones(2, np.float64))


def test_mixed_backends_raise_type_error():
    with gpunet.use_backend("strict"):
        dw = gpunet.asarray(np.ones(2))
    with pytest.raises(TypeError, match="two backends"):
        optim.sgd(np.zeros(2), dw)


def test_state_of_another_parameter_raises():
    with pytest.raises(ValueError, match="own config"):
        optim.sgd_momentum(np.zeros(2), np.ones(2), {"velocity": np.zeros(3)})


def test_get_update_rule():
    assert optim.get_update_rule("adam") == ("adam", optim.adam)

    def my_rule(w, dw, config):
        return w, config

    assert optim.get_update_rule(my_rule) == ("my_rule", my_rule)
    with pytest.raises(ValueError, match="invalid update_rule 'adagrad'"):
        optim.get_update_rule("adagrad")


def test_adamw_with_weight_decay_one_matches_reference(rng):
    # weight_decay = 1 is in range (>= 0): the decay step must run for it too
    w0, dws = _problem(rng)
    expected, _ = ref_adamw(w0, dws, lr=0.01, wd=1.0)
    w, cfg = w0.copy(), {"learning_rate": 0.01, "weight_decay": 1.0}
    for dw in dws:
        optim.adamw(w, dw, cfg)
    np.testing.assert_allclose(w, expected, **tol("float64"))


def test_unknown_key_messages_give_each_hint_and_nothing_else():
    with pytest.raises(ValueError) as info:
        optim.adam(np.zeros(2), np.ones(2), {"learnin_rate": 0.1, "weight_decay": 0.1})
    assert ("(\'learnin_rate\' -> did you mean \'learning_rate\'?; \'weight_decay\' -> decoupled weight "
            "decay is update_rule='adamw')") in str(info.value)
    with pytest.raises(ValueError) as info:
        optim.sgd(np.zeros(2), np.ones(2), {"zzz": 1})
    assert str(info.value) == "unknown optim_config key(s) ['zzz'] for update rule 'sgd'; accepted keys: " \
                              "['learning_rate']"


def test_config_that_is_not_a_dict_is_named():
    with pytest.raises(TypeError, match="config must be a dict or None, got list"):
        optim.sgd(np.zeros(2), np.ones(2), [("learning_rate", 0.1)])


def test_dtype_mismatch_says_how_to_fix_it():
    fix = r"; compute the gradient in the parameter's dtype \(nothing is cast silently\)$"
    with pytest.raises(TypeError, match=fix):
        optim.sgd(np.zeros(2, np.float32), np.ones(2, np.float64))


@pytest.mark.parametrize("key,rule", [("velocity", "sgd_momentum"), ("m", "adam"), ("cache", "rmsprop")])
def test_state_on_another_backend_raises_type_error_naming_both(key, rule):
    with gpunet.use_backend("strict"):
        state = gpunet.asarray(np.zeros(2))
    with pytest.raises(TypeError, match="two backends"):
        optim.UPDATE_RULES[rule](np.zeros(2), np.ones(2), {key: state})


def test_get_update_rule_names_a_callable_without_a_name_by_its_type():
    class Rule:
        def __call__(self, w, dw, config):
            return w, config

    rule = Rule()
    assert optim.get_update_rule(rule) == ("Rule", rule)
    with pytest.raises(ValueError, match=r"or a callable update\(w, dw, config\) -> \(w, config\)"):
        optim.get_update_rule(3)
