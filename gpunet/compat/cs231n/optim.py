"""CS231n's ``cs231n/optim.py``: ``update(w, dw, config) -> (next_w, config)`` with the
course's defaults. As in CS231n, ``w`` and the state arrays the caller put in ``config``
are left unchanged (next_w and the new state are new arrays); the Solver uses gpunet's
in-place rules of the same names instead."""

from __future__ import annotations

from ... import optim as _optim
from ...backend.namespace import backend_of
from .._course import copy

__all__ = ["adam", "rmsprop", "sgd", "sgd_momentum"]


def _course_rule(name: str):
    rule = _optim.UPDATE_RULES[name]

    def update(w, dw, config=None):
        if isinstance(config, dict):
            for key in _optim.STATE_KEYS[name]:
                if key in config and backend_of(config[key]) is not None:
                    config[key] = copy(config[key])
        return rule(copy(w) if backend_of(w) is not None else w, dw, config)

    update.__name__ = update.__qualname__ = name
    update.__doc__ = (f"CS231n's {name}: :func:`gpunet.optim.{name}` applied to a copy of w "
                      "(w and the caller's state arrays stay unchanged).")
    return update


sgd = _course_rule("sgd")
sgd_momentum = _course_rule("sgd_momentum")
rmsprop = _course_rule("rmsprop")
adam = _course_rule("adam")
