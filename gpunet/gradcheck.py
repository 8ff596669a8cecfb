"""Numeric gradients by central differences, CS231n names, for arrays of any backend.

The numeric side works on the host in float64. As in CS231n, ``x`` itself is perturbed
(so ``f`` may ignore its argument and read ``x`` through a closure, e.g. a model's
``params``) and restored afterwards. A NumPy ``x`` is perturbed element by element in
place; a device ``x`` is rewritten whole from the host for each evaluation, never by
element-wise device writes in a loop. A float16/float32 ``x`` gets a ``UserWarning``:
its rounding swamps the differences, so only float64 checks are meaningful.
"""

from __future__ import annotations

import warnings

import numpy as np

from .backend.namespace import backend_of, from_host, to_numpy
from .backend.ops import host_dtype


def rel_error(x, y) -> float:
    """max |x - y| / max(1e-8, |x| + |y|) over all elements (host float64)."""
    x, y = to_numpy(x, np.float64), to_numpy(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ: {x.shape} vs {y.shape}")
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)), initial=0.0))


class _Perturbed:
    """Host float64 copy of ``x`` whose changes are written back into ``x``."""

    def __init__(self, x):
        if not hasattr(x, "shape"):
            raise ValueError(f"gradient checks need an array to perturb, got {type(x).__name__}")
        self.x = x
        self.values = to_numpy(x, np.float64).copy()
        self.in_place = backend_of(x) == "numpy"
        self.dtype = host_dtype(x.dtype)
        if self.dtype.kind == "f" and self.dtype.itemsize < 8:
            warnings.warn(
                f"gradient check on a {self.dtype} array: its rounding error is close to the "
                "central-difference step, so relative errors near 1 mean nothing; check gradients "
                "in float64 (a model built with dtype=np.float64, inputs cast with "
                "x.astype(np.float64))", UserWarning, stacklevel=3)

    def set(self, ix, value: float) -> None:
        self.values[ix] = value
        if self.in_place:
            self.x[ix] = value
        else:
            self.x[...] = from_host(self.values.astype(self.dtype), like=self.x)

    def difference(self, f, ix, h: float) -> np.ndarray:
        """(f(x + h e_ix) - f(x - h e_ix)) / (2h) on the host in float64; x is restored."""
        old = self.values[ix]
        self.set(ix, old + h)
        pos = _evaluate(f, self.x)
        self.set(ix, old - h)
        neg = _evaluate(f, self.x)
        self.set(ix, old)
        return (pos - neg) / (2 * h)


def _evaluate(f, x) -> np.ndarray:
    # a copy: f may return x itself (or a view of it), which the next perturbation changes
    return np.array(to_numpy(f(x)), dtype=np.float64, copy=True)


def eval_numerical_gradient(f, x, verbose: bool = True, h: float = 1e-5) -> np.ndarray:
    """Numeric gradient (host float64, shape of x) of the scalar function f at x."""
    p = _Perturbed(x)
    grad = np.zeros_like(p.values)
    for ix in np.ndindex(p.values.shape):
        grad[ix] = float(p.difference(f, ix, h))
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h: float = 1e-5) -> np.ndarray:
    """Numeric gradient (host float64, shape of x) of sum(f(x) * df) for an array-valued f."""
    p = _Perturbed(x)
    df = to_numpy(df, np.float64)
    grad = np.zeros_like(p.values)
    for ix in np.ndindex(p.values.shape):
        grad[ix] = np.sum(p.difference(f, ix, h) * df)
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks: int = 10, h: float = 1e-5,
                      seed=None, verbose: bool = True) -> list[float]:
    """Compare ``analytic_grad`` with the numeric gradient of scalar f at ``num_checks``
    random elements of x; prints each (when verbose) and returns their relative errors."""
    p = _Perturbed(x)
    analytic = to_numpy(analytic_grad, np.float64)
    if analytic.shape != p.values.shape:
        raise ValueError(f"grad_check_sparse: analytic_grad has shape {analytic.shape}, x has {p.values.shape}")
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(num_checks):
        ix = tuple(int(rng.integers(n)) for n in p.values.shape)
        numeric = float(p.difference(f, ix, h))
        a = analytic[ix]
        err = abs(numeric - a) / max(abs(numeric) + abs(a), 1e-12)
        errors.append(err)
        if verbose:
            print(f"numerical: {numeric:f} analytic: {a:f}, relative error: {err:e}")
    return errors
