"""The one tolerance table: how close results must be, per dtype.

``GRAD_REL_ERROR``: numeric-vs-analytic gradient, float64, as CS231n asks.
``TOL[dtype]``: backend parity and float32-vs-float64 comparisons of the same function.
"""

import numpy as np

GRAD_REL_ERROR = 1e-7

# Whole models: a loss of size ~1 differenced with h = 1e-5 in float64 carries a round-off
# of about 1e-16 / 1e-5 = 1e-11 in every numeric gradient entry, so entries whose true
# value is below ~1e-4 cannot reach a relative error of 1e-7 whatever the analytic side
# does. For models, the relative error's denominator is floored at GRAD_FLOOR (1e-4):
# entries above it are held to 1e-7 relative, entries below to 1e-11 absolute.
GRAD_FLOOR = 1e-4


def model_grad_error(analytic, numeric) -> float:
    """max |a - n| / max(|a| + |n|, GRAD_FLOOR) (host float64)."""
    import gpunet

    a, n = gpunet.to_numpy(analytic, np.float64), np.asarray(numeric, np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), GRAD_FLOOR)))

TOL = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
    np.dtype(np.float16): dict(rtol=2e-2, atol=2e-3),
}


def tol(dtype):
    """``rtol``/``atol`` for comparing results computed in ``dtype``."""
    return TOL[np.dtype(str(dtype).rsplit(".", 1)[-1])]


def assert_close(actual, expected, dtype=None):
    """``actual`` (any backend) against ``expected`` (NumPy) within the table's tolerance."""
    import gpunet

    actual = gpunet.to_numpy(actual)
    expected = np.asarray(expected)
    dtype = dtype or actual.dtype
    np.testing.assert_allclose(actual, expected, **tol(dtype))
