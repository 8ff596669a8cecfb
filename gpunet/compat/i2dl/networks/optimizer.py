"""I2DL's ``networks/optimizer.py``: the exercise-4 ``Optimizer`` (a gradient step on a
classifier's W) and the exercise-5/6 optimizers ``SGD``, ``SGDMomentum`` and ``Adam``
(``_update(w, dw, config, lr) -> (next_w, config)``; ``step()`` updates every parameter of
``model.params`` from ``model.grads``). The update math is gpunet's ``optim`` rules."""

from __future__ import annotations

from typing import ClassVar

from .... import _validate
from .... import optim as _optim
from ..._course import copying_update

__all__ = ["SGD", "Adam", "Optimizer", "SGDMomentum", "sgd_momentum"]


def _lr(name: str, value) -> float:
    return _validate.real(name, value, low=0.0)


class Optimizer:
    """Exercise 4: ``step(dw)`` sets ``model.W = model.W - learning_rate * dw``."""

    def __init__(self, model, learning_rate=5e-5):
        self.model = model
        self.lr = _lr("learning_rate", learning_rate)

    def step(self, dw):
        self.model.W, _ = copying_update("sgd", self.model.W, dw, {"learning_rate": self.lr})


class SGD:
    """Vanilla gradient descent over ``model.params`` (updated in place, as I2DL's)."""

    def __init__(self, model, loss_func, learning_rate=1e-4, **kwargs):
        self.model, self.loss_func = model, loss_func
        self.lr = _lr("learning_rate", learning_rate)
        self.grads = None
        self.optim_config = kwargs.pop("optim_config", {})
        self._reset()

    def _reset(self):
        self.optim_configs = {p: dict(self.optim_config) for p in getattr(self.model, "params", {})}

    def backward(self, y_pred, y_true):
        """Gradients of the loss into ``model.grads`` (through ``model.backward``)."""
        self.model.backward(self.loss_func.backward(y_pred, y_true))

    def _update(self, w, dw, lr=None):
        return _optim.sgd(w, dw, {"learning_rate": self.lr if lr is None else lr})[0]

    def _apply(self, name, w, dw):
        return self._update(w, dw)

    def step(self):
        """Update every parameter with its gradient, then reset the gradient to 0."""
        for name in self.model.grads:
            self.model.params[name] = self._apply(name, self.model.params[name], self.model.grads[name])
            self.model.grads[name] = 0.0


class _Stateful(SGD):
    """An optimizer whose ``_update`` keeps per-parameter state in a config dict."""

    rule = ""
    defaults: ClassVar[dict] = {}

    def _update(self, w, dw, config=None, lr=None):
        """(next_w, config): one step of the rule on a copy of w; the state in config is replaced."""
        config = {} if config is None else config
        for key, value in self.defaults.items():
            config.setdefault(key, value)
        known = (*_optim.DEFAULTS[self.rule], *_optim.STATE_KEYS[self.rule])
        run = {"learning_rate": self.lr if lr is None else lr, **{k: config[k] for k in known if k in config}}
        next_w, run = copying_update(self.rule, w, dw, run)
        config.update({k: run[k] for k in _optim.STATE_KEYS[self.rule]})
        return next_w, config

    def _apply(self, name, w, dw):
        next_w, self.optim_configs[name] = self._update(w, dw, self.optim_configs[name])
        return next_w


class SGDMomentum(_Stateful):
    """v = momentum * v - lr * dw; w + v. Config: 'momentum' (0.9), state 'velocity'."""

    rule = "sgd_momentum"
    defaults: ClassVar[dict] = {"momentum": 0.9}


sgd_momentum = SGDMomentum  # the exercise's older class name


class Adam(_Stateful):
    """Adam with bias correction. Config: 'beta1' (0.9), 'beta2' (0.999), 'epsilon' (1e-4,
    I2DL's default), state 'm', 'v', 't'."""

    rule = "adam"
    defaults: ClassVar[dict] = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-4}
