"""First-order update rules with CS231n's interface: ``update(w, dw, config) -> (w, config)``.

Every rule updates the parameter ``w`` **in place** (on its own device) and returns it with
the config dict, which holds the hyperparameters (defaults filled in on first use) and the
rule's state arrays (``velocity``, ``cache``, ``m``, ``v``: created next to ``w`` with
:func:`gpunet.backend.namespace.zeros`). The Adam step counter ``t`` is a Python int, so no
step ever reads anything back from the device. Unknown config keys raise ``ValueError``.

``sgd``, ``sgd_momentum`` and ``adam``/``adamw`` go through ``get_ops(xp)``: CuPy runs fused
CUDA kernels, NumPy in-place passes into reused scratch; the generic versions are the reference.
"""

from __future__ import annotations

import difflib
from typing import Any

from . import _validate
from .backend import get_array_module, get_ops
from .backend.namespace import zeros

__all__ = [
    "DEFAULTS",
    "STATE_KEYS",
    "UPDATE_RULES",
    "adam",
    "adamw",
    "check_config",
    "get_update_rule",
    "nesterov",
    "rmsprop",
    "sgd",
    "sgd_momentum",
    "with_defaults",
]

#: Hyperparameter defaults per rule (CS231n's; ``adamw``'s weight decay as PyTorch's).
DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "nesterov": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adamw": {
        "learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
        "weight_decay": 1e-2,
    },
}

#: State each rule keeps in its config (arrays next to ``w``, plus Adam's int ``t``).
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("velocity",),
    "nesterov": ("velocity",),
    "rmsprop": ("cache",),
    "adam": ("m", "v", "t"),
    "adamw": ("m", "v", "t"),
}

# Allowed values: finite numbers in [0, 1) or, without "high", >= 0 (epsilon > 0).
_RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 0.0},
    "momentum": {"low": 0.0, "high": 1.0, "high_open": True},
    "decay_rate": {"low": 0.0, "high": 1.0, "high_open": True},
    "beta1": {"low": 0.0, "high": 1.0, "high_open": True},
    "beta2": {"low": 0.0, "high": 1.0, "high_open": True},
    "epsilon": {"low": 0.0, "low_open": True},
    "weight_decay": {"low": 0.0},
}

# Common spellings from other libraries, for the "did you mean" hint.
_ALIASES = {"lr": "learning_rate", "eps": "epsilon", "mu": "momentum", "decay": "decay_rate",
            "alpha": "decay_rate", "rho": "decay_rate", "wd": "weight_decay"}


def check_config(rule: str, config: dict) -> dict[str, float]:
    """``config``'s hyperparameters as Python floats. Raises ``ValueError`` for keys ``rule``
    does not accept, and an ``ArgumentError`` (a ``ValueError`` and a ``TypeError``) for
    values that are not finite numbers in range."""
    accepted = tuple(DEFAULTS[rule]) + STATE_KEYS[rule]
    unknown = [k for k in config if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            close = [_ALIASES[k]] if _ALIASES.get(k) in accepted else \
                difflib.get_close_matches(str(k), accepted, n=1)
            if close:
                hints.append(f"{k!r} -> did you mean {close[0]!r}?")
            elif k == "weight_decay":
                hints.append("'weight_decay' -> decoupled weight decay is update_rule='adamw'")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(
            f"unknown optim_config key(s) {unknown} for update rule {rule!r}{hint}; "
            f"accepted keys: {list(accepted)}"
        )
    _check_step_count(config)
    # a Python or NumPy scalar (a device array would force a host sync), kept as a Python float
    return {key: _validate.real(f"optim_config[{key!r}]", config[key], **_RANGES[key])
            for key in DEFAULTS[rule] if key in config}


def _check_step_count(config: dict) -> None:
    _validate.integer("optim_config['t'] (Adam's step count)", config.get("t", 0), low=0)


#: Configs that passed :func:`check_config`, by rule, each key, and each hyperparameter's
#: exact type and value (state arrays by key only; Adam's ``t`` is checked every step).
_checked: dict = {}


def _config_key(rule: str, config: dict):
    hyper = DEFAULTS[rule]
    key = tuple((k, _validate.memo_key(v)) if k in hyper else (k,) for k, v in config.items() if k != "t")
    return None if any(len(item) == 2 and item[1] is None for item in key) else (rule, key)


def with_defaults(rule: str, config: dict | None) -> dict:
    """``config`` (created if ``None``) checked and with ``rule``'s missing defaults filled in.

    A config whose keys, types and values were checked before is not checked again (the
    training loop passes the same config every step); ``t`` always is.
    """
    if config is None:
        config = {}
    elif not isinstance(config, dict):
        raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
    config.update(_validate.cached(_checked, _config_key(rule, config), lambda: check_config(rule, config),
                                   size=1024))
    if "t" in config:  # changes every step: checked every time
        _check_step_count(config)
    for key, value in DEFAULTS[rule].items():
        config.setdefault(key, value)
    return config


def _prepare(rule: str, w, dw, config):
    config = with_defaults(rule, config)
    _validate.float_inputs(rule, w=w)  # each a real floating array (not None, a list, ints)
    _validate.float_inputs(rule, dw=dw)
    xp = get_array_module(w, dw)  # raises TypeError naming both backends if they differ
    if tuple(dw.shape) != tuple(w.shape):
        raise ValueError(
            f"{rule}: gradient shape {tuple(dw.shape)} does not match parameter shape "
            f"{tuple(w.shape)}; grads must be keyed and shaped like model.params"
        )
    if dw.dtype != w.dtype:
        raise TypeError(
            f"{rule}: gradient dtype {dw.dtype} differs from parameter dtype {w.dtype}; "
            "compute the gradient in the parameter's dtype (nothing is cast silently)"
        )
    if not getattr(getattr(w, "flags", None), "writeable", True):  # NumPy's read-only arrays
        raise ValueError(f"{rule}: the parameter w is read-only, and updates happen in place; "
                         "pass a writeable copy (w.copy())")
    return xp, config


def _state(config: dict, key: str, w):
    """The state array ``config[key]``, created as zeros next to ``w`` on first use."""
    s = config.get(key)
    if s is None:
        s = zeros(w.shape, like=w)
        config[key] = s
        return s
    _validate.float_inputs("optimizer state", **{key: s})
    get_array_module(w, s)
    if tuple(s.shape) != tuple(w.shape) or s.dtype != w.dtype:
        raise ValueError(
            f"optimizer state {key!r} has shape {tuple(s.shape)} and dtype {s.dtype}, but the "
            f"parameter has {tuple(w.shape)} and {w.dtype}; each parameter needs its own config"
        )
    return s


def sgd(w, dw, config=None):
    """Vanilla SGD, in place: ``w -= learning_rate * dw``. Config: ``learning_rate`` (1e-2)."""
    xp, config = _prepare("sgd", w, dw, config)
    get_ops(xp).sgd(w, dw, config["learning_rate"])
    return w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum, in place: ``v = momentum*v - lr*dw; w += v``.

    Config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity`` (like ``w``).
    """
    xp, config = _prepare("sgd_momentum", w, dw, config)
    v = _state(config, "velocity", w)
    get_ops(xp).sgd_momentum(w, dw, v, config["learning_rate"], config["momentum"])
    return w, config


def nesterov(w, dw, config=None):
    """Nesterov momentum in CS231n's lecture form, in place:
    ``v_prev = v; v = mu*v - lr*dw; w += -mu*v_prev + (1 + mu)*v``.

    Config: ``learning_rate`` (1e-2), ``momentum`` (0.9), state ``velocity``.
    """
    _, config = _prepare("nesterov", w, dw, config)
    v = _state(config, "velocity", w)
    lr, mu = config["learning_rate"], config["momentum"]
    v_new = mu * v - lr * dw
    w[...] = w + (-mu * v + (1 + mu) * v_new)
    v[...] = v_new
    return w, config


def rmsprop(w, dw, config=None):
    """RMSProp, in place: ``cache = d*cache + (1-d)*dw**2; w -= lr*dw / (sqrt(cache) + eps)``.

    Config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8), state ``cache``.
    """
    xp, config = _prepare("rmsprop", w, dw, config)
    cache = _state(config, "cache", w)
    d, lr, eps = config["decay_rate"], config["learning_rate"], config["epsilon"]
    cache[...] = d * cache + (1 - d) * (dw * dw)
    w[...] = w - lr * dw / (xp.sqrt(cache) + eps)
    return w, config


def adam(w, dw, config=None):
    """Adam with bias correction (CS231n: ``t`` is incremented before the step), in place.

    Config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8),
    state ``m``, ``v`` (like ``w``) and ``t`` (Python int, starts at 0).
    """
    return _adam("adam", w, dw, config)


def adamw(w, dw, config=None):
    """AdamW: Adam plus decoupled weight decay ``w *= 1 - lr*weight_decay`` before the step.

    Config: Adam's, plus ``weight_decay`` (1e-2, as PyTorch); it applies to every parameter
    it is given (biases included).
    """
    return _adam("adamw", w, dw, config)


def _adam(rule, w, dw, config):
    xp, config = _prepare(rule, w, dw, config)
    m = _state(config, "m", w)
    v = _state(config, "v", w)
    t = int(config.get("t", 0)) + 1
    config["t"] = t
    lr = config["learning_rate"]
    if rule == "adamw" and config["weight_decay"] != 0:
        w[...] = w * (1 - lr * config["weight_decay"])
    get_ops(xp).adam(w, dw, m, v, t, lr, config["beta1"], config["beta2"], config["epsilon"])
    return w, config


UPDATE_RULES = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "nesterov": nesterov,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
}


def get_update_rule(rule):
    """``(name, function)`` for a rule name in :data:`UPDATE_RULES` or a callable rule."""
    if callable(rule):
        return getattr(rule, "__name__", type(rule).__name__), rule
    if isinstance(rule, str) and rule in UPDATE_RULES:
        return rule, UPDATE_RULES[rule]
    raise ValueError(
        f"invalid update_rule {rule!r}; expected one of {sorted(UPDATE_RULES)} or a callable "
        "update(w, dw, config) -> (w, config)"
    )
