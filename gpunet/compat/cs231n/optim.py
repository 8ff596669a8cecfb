"""CS231n's ``cs231n/optim.py``: ``update(w, dw, config) -> (next_w, config)`` with the
course's defaults. As in CS231n, ``w`` and the state arrays the caller put in ``config``
are left unchanged (next_w and the new state are new arrays); the Solver uses gpunet's
in-place rules of the same names instead."""

from __future__ import annotations

from .._course import copying_update

__all__ = ["adam", "rmsprop", "sgd", "sgd_momentum"]


def _course_rule(name: str):
    def update(w, dw, config=None):
        return copying_update(name, w, dw, config)

    update.__name__ = update.__qualname__ = name
    update.__doc__ = (f"CS231n's {name}: :func:`gpunet.optim.{name}` applied to a copy of w "
                      "(w and the caller's state arrays stay unchanged).")
    return update


sgd = _course_rule("sgd")
sgd_momentum = _course_rule("sgd_momentum")
rmsprop = _course_rule("rmsprop")
adam = _course_rule("adam")
