"""The one tolerance table: how close results must be, per dtype.

``GRAD_REL_ERROR``: numeric-vs-analytic gradient, float64, as CS231n asks.
``TOL[dtype]``: backend parity and float32-vs-float64 comparisons of the same function.
"""

import numpy as np

GRAD_REL_ERROR = 1e-7

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
