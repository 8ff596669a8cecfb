"""The compiled CPU kernels (``gpunet/backend/numba_kernels.py``) against the generic Ops and
the NumPy path, and how they are switched on and off.

Max pooling and its backward against the generic Ops bit for bit (NaN payloads aside:
signed zeros included): random geometries (any window, stride, floored sizes), ties, NaN, 0, -0,
inf, non-contiguous inputs; the fused conv-ReLU-pool and conv-ReLU primitives with the
kernels against the NumPy path of the same class, bit for bit (the same GEMMs and sums),
NaN included.
Results do not depend on the kernels' thread count. ``GPUNET_NUMBA=0``, a missing numba and
a bad ``GPUNET_NUMBA`` take the NumPy path or say what is wrong. Kernel tests are skipped
(saying why) where numba is not installed; the switch tests run everywhere.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpunet.backend
from gpunet import _install
from gpunet.backend import numpy_ops, threads
from gpunet.backend.geometry import ConvGeometry, PoolGeometry
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops

try:
    import numba  # noqa: F401
except ImportError:
    HAVE_NUMBA = False
else:
    HAVE_NUMBA = True
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed: the compiled kernels are optional "
                                 f"({_install.pip_install('cpu')})")

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
GENERIC, FAST = Ops(np), NumpyOps(np)
eq = np.testing.assert_array_equal


@pytest.fixture
def compiled(monkeypatch):
    """The kernels on (skips without numba); the switch is restored afterwards."""
    monkeypatch.delenv(numpy_ops.NUMBA_ENV, raising=False)
    monkeypatch.setattr(numpy_ops, "_numba", {})
    if numpy_ops.kernels() is None:
        pytest.skip("numba is not installed")
    return numpy_ops.kernels()


@pytest.fixture
def numpy_only(monkeypatch):
    """The NumPy path (GPUNET_NUMBA=0), decided afresh."""
    monkeypatch.setenv(numpy_ops.NUMBA_ENV, "0")
    monkeypatch.setattr(numpy_ops, "_numba", {})


def same_bits(got, want):
    """Equal bit for bit, NaN payloads aside."""
    assert got.dtype == want.dtype and got.shape == want.shape
    eq(got, want)
    it = np.int32 if got.dtype == np.float32 else np.int64
    keep = ~np.isnan(want)
    eq(got.view(it)[keep], want.view(it)[keep])


def values(draw_rng, dtype, shape, ties, nans):
    """Random values; with ``ties`` on a coarse grid (equal maxima, zeros, -0.0); with ``nans``
    NaN and +-inf sprinkled in."""
    x = draw_rng.standard_normal(shape)
    if ties:
        x = np.round(x * 2) / 2
        x[draw_rng.random(shape) < 0.1] = -0.0
    x = x.astype(dtype)
    if nans and x.size:
        flat = x.reshape(-1)
        picks = draw_rng.choice(flat.size, size=min(flat.size, 6), replace=False)
        flat[picks] = np.array([np.nan, np.inf, -np.inf, np.nan, 0.0, np.nan], dtype)[: picks.size]
    return x


pools = st.tuples(
    st.integers(1, 3), st.integers(1, 4),  # n, c
    st.one_of(st.just((2, 2, 2, 2)), st.tuples(*[st.integers(1, 4)] * 2, *[st.integers(1, 3)] * 2)),  # window, stride
    st.integers(0, 4), st.integers(0, 4),  # rows, columns past the first window
    st.sampled_from([np.float32, np.float64]), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1),
)


# --- kernels against the generic Ops ---------------------------------------------------------
@needs_numba
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pools)
def test_max_pool_and_its_backward_match_the_generic_ops(compiled, case):  # the fixture holds for every case
    n, c, (kh, kw, sh, sw), extra_h, extra_w, dtype, ties, nans, seed = case
    rng = np.random.default_rng(seed)
    geo = PoolGeometry((n, c, kh + extra_h, kw + extra_w), (kh, kw), (sh, sw))
    x = values(rng, dtype, geo.x_shape, ties, nans)
    dout = values(rng, dtype, geo.out_shape, ties, nans)
    out = GENERIC.max_pool(x, geo)
    same_bits(FAST.max_pool(x, geo), out)
    same_bits(FAST.max_pool_backward(dout, x, out, geo), GENERIC.max_pool_backward(dout, x, out, geo))
    # the fused ReLU backward: as max-pool backward followed by the ReLU backward of x
    s = np.maximum(x, 0)
    pooled = GENERIC.max_pool(s, geo)
    want = GENERIC.relu_backward(GENERIC.max_pool_backward(dout, s, pooled, geo), s)
    got = NumpyOps._route(dout, s, pooled, geo, True, np.empty(s.shape, dtype))
    same_bits(got, want)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_take_non_contiguous_inputs(compiled, dtype):
    rng = np.random.default_rng(3)
    big = values(rng, dtype, (4, 6, 10, 9), True, True)
    x = big[::2, 1::2].transpose(0, 1, 3, 2)  # (2, 3, 9, 10), no axis contiguous
    geo = PoolGeometry(x.shape, (2, 2), (2, 2))
    out = GENERIC.max_pool(x, geo)
    dout = values(rng, dtype, (geo.out_shape[0], geo.out_shape[1], geo.out_shape[3], geo.out_shape[2]), True,
                  False).transpose(0, 1, 3, 2)
    same_bits(FAST.max_pool(x, geo), out)
    same_bits(FAST.max_pool_backward(dout, x, out, geo), GENERIC.max_pool_backward(dout, x, out, geo))


@needs_numba
def test_a_window_holding_nan_routes_to_its_last_nan(compiled):
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]], [[7.0, 7.0], [2.0, 7.0]]]])
    geo = PoolGeometry(x.shape, (2, 2), (2, 2))
    out = FAST.max_pool(x, geo)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 1, 0, 0] == 7.0
    dx = FAST.max_pool_backward(np.array([[[[3.0]], [[4.0]]]]), x, out, geo)
    eq(dx, [[[[0, 0], [3, 0]], [[4, 0], [0, 0]]]])  # the last NaN; the first of the tied maxima


FUSED = [  # x shape, filters, conv (pad, stride), pool (kh, kw, stride)
    ((5, 3, 8, 10), 4, (1, 1), (2, 2, (2, 2))),  # 2x2 windows, padded GEMM rows
    ((4, 2, 9, 7), 3, (1, 1), (2, 2, (2, 2))),  # rows and columns no window reaches
    ((3, 3, 9, 7), 4, (1, 1), (3, 3, (2, 2))),  # overlapping windows
    ((3, 2, 8, 9), 5, (0, 1), (2, 3, (1, 3))),
    ((3, 2, 11, 9), 4, (1, 2), (2, 2, (2, 2))),  # strided convolution: exact-width rows
]


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FUSED)
@pytest.mark.parametrize("nans", [False, True])
def test_fused_conv_primitives_match_the_numpy_path_bit_for_bit(monkeypatch, dtype, case, nans):
    """With and without the kernels: the same GEMMs and sums, so every output is identical."""
    shape, f, (pad, stride), (kh, kw, pstride) = case
    rng = np.random.default_rng(7)
    x = values(rng, dtype, shape, True, nans)
    wt = values(rng, dtype, (f, shape[1], 3, 3), True, False)
    b = values(rng, dtype, (f,), True, False)
    geo = ConvGeometry(shape, wt.shape, (stride, stride), (pad, pad))
    pool = PoolGeometry(geo.out_shape, (kh, kw), pstride)
    dout = values(rng, dtype, pool.out_shape, True, False)
    dconv = values(rng, dtype, geo.out_shape, True, False)
    results = []
    for setting in ("0", "1"):
        monkeypatch.setenv(numpy_ops.NUMBA_ENV, setting)
        monkeypatch.setattr(numpy_ops, "_numba", {})
        s, pooled, saved = FAST.conv_relu_pool_forward(x, wt, b, geo, pool)
        grads = FAST.conv_relu_pool_backward(dout, s, pooled, wt, geo, pool, saved, True)
        r, saved = FAST.conv_relu_forward(x, wt, b, geo)
        relu_grads = FAST.conv_relu_backward(dconv, r, wt, geo, saved, True)
        a, saved = FAST.conv2d_forward(x, wt, b, geo)
        results.append((s, pooled, *grads, r, *relu_grads, a, *FAST.conv2d_backward(dconv, wt, geo, saved)))
    for numpy_result, numba_result in zip(*results, strict=True):
        same_bits(numba_result, numpy_result)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(compiled, dtype, monkeypatch):
    """The kernels split over the gpunet thread pool by samples (every sample a part here)."""
    monkeypatch.setattr(numpy_ops, "PART_BYTES", 1)
    rng = np.random.default_rng(11)
    x = values(rng, dtype, (6, 5, 12, 11), True, True)
    geo = PoolGeometry(x.shape, (3, 2), (2, 2))
    out = GENERIC.max_pool(x, geo)
    dout = values(rng, dtype, geo.out_shape, True, False)
    pairs = PoolGeometry(x.shape, (2, 2), (2, 2))
    pairs_out = GENERIC.max_pool(x, pairs)
    pairs_dout = values(rng, dtype, pairs.out_shape, True, False)
    results = []
    old = threads.get_threads()
    try:
        for n in (1, 2, 3):
            threads.set_threads(n)
            results.append((FAST.max_pool(x, geo), FAST.max_pool_backward(dout, x, out, geo),
                            FAST.max_pool_backward(pairs_dout, x, pairs_out, pairs)))
    finally:
        threads.set_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            same_bits(a, b)


@needs_numba
def test_float16_takes_the_numpy_path(compiled):
    x = np.arange(32, dtype=np.float16).reshape(1, 2, 4, 4)
    geo = PoolGeometry(x.shape, (2, 2), (2, 2))
    out = FAST.max_pool(x, geo)
    assert out.dtype == np.float16
    dout = np.ones_like(out)
    eq(FAST.max_pool_backward(dout, x, out, geo), GENERIC.max_pool_backward(dout, x, out, geo))


@needs_numba
def test_kernels_compile_without_a_writable_cache(monkeypatch):
    """Where numba finds no cache location (read-only package, no writable home) the kernels
    are compiled without the disk cache instead of failing."""
    from gpunet.backend import numba_kernels

    calls = []

    def njit(**options):
        calls.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return lambda fn: fn

    monkeypatch.setattr(numba_kernels.numba, "njit", njit)
    f = numba_kernels._jit(lambda: 1)
    assert f() == 1 and calls[0]["cache"] and "cache" not in calls[1]


# --- the switch (runs without numba too) ----------------------------------------------------
def test_gpunet_numba_0_takes_the_numpy_path(numpy_only):
    assert numpy_ops.kernels() is None
    rng = np.random.default_rng(2)
    x = values(rng, np.float32, (2, 3, 6, 6), True, True)
    geo = PoolGeometry(x.shape, (2, 2), (2, 2))
    out = FAST.max_pool(x, geo)
    eq(out, GENERIC.max_pool(x, geo))
    dout = np.ones(out.shape, np.float32)
    eq(FAST.max_pool_backward(dout, x, out, geo), GENERIC.max_pool_backward(dout, x, out, geo))


def test_without_numba_the_numpy_path_is_taken(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "gpunet.backend.numba_kernels", raising=False)
    monkeypatch.delattr(gpunet.backend, "numba_kernels", raising=False)
    monkeypatch.setattr(numpy_ops, "_numba", {})
    monkeypatch.delenv(numpy_ops.NUMBA_ENV, raising=False)
    assert numpy_ops.kernels() is None
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    eq(FAST.max_pool(x, PoolGeometry(x.shape, (2, 2), (2, 2))), [[[[5.0, 7.0], [13.0, 15.0]]]])
    monkeypatch.setattr(numpy_ops, "_numba", {})
    monkeypatch.setenv(numpy_ops.NUMBA_ENV, "1")  # asked for explicitly: an error that says how to fix it
    with pytest.raises(ImportError, match="GPUNET_NUMBA=1 asks for the numba kernels, but numba cannot be "
                                          'imported.*pip install "numba>=0.60", or unset GPUNET_NUMBA'):
        numpy_ops.kernels()


def test_a_bad_gpunet_numba_is_reported_when_used_not_at_import():
    code = ("import sys, numpy as np, gpunet, gpunet.layers as L\n"
            "assert 'numba' not in sys.modules, 'numba imported by import gpunet'\n"
            "try:\n"
            "    L.max_pool_forward(np.zeros((1, 1, 2, 2)), {'pool_height': 2, 'pool_width': 2})\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, GPUNET_NUMBA="maybe")
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "environment variable GPUNET_NUMBA must be 0 (NumPy only), 1 (the numba kernels) or auto/unset" in got.stdout
    assert "got 'maybe'; fix or unset it" in got.stdout


@needs_numba
@pytest.mark.parametrize("window", [(2, 2), (3, 2)])
def test_an_out_that_no_element_equals_routes_nothing(compiled, window):
    """As the generic Ops: the gradient goes to an element equal to the given pooled output;
    a window with none gets no gradient (a caller's inconsistent ``out``, not a max pool's)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6))
    geo = PoolGeometry(x.shape, window, (2, 2))
    out = GENERIC.max_pool(x, geo)
    out[:, 1] += 1.0  # channel 1: no element equals its window's out
    dout = rng.standard_normal(out.shape)
    dx = FAST.max_pool_backward(dout, x, out, geo)
    same_bits(dx, GENERIC.max_pool_backward(dout, x, out, geo))
    assert not dx[:, 1].any() and dx[:, 0].any()


@needs_numba
def test_a_process_forked_after_the_kernels_ran_can_use_them():
    """numba's OpenMP threading layer terminates a forked child ("fork() called from a process
    already using GNU OpenMP"); the kernels use no threading layer, so a child forked after a
    max pool (multiprocessing's default on Linux) runs them too."""
    code = ("import multiprocessing as mp, numpy as np\n"
            "from gpunet.backend.numpy_ops import NumpyOps\n"
            "from gpunet.backend.geometry import PoolGeometry\n"
            "ops, x = NumpyOps(np), np.arange(64.0).reshape(1, 4, 4, 4)\n"
            "geo = PoolGeometry(x.shape, (2, 2), (2, 2))\n"
            "want = ops.max_pool(x, geo)\n"
            "def child(q):\n"
            "    q.put(bool((ops.max_pool(x, geo) == want).all()))\n"
            "if __name__ == '__main__':\n"
            "    ctx = mp.get_context('fork')\n"
            "    q = ctx.Queue()\n"
            "    p = ctx.Process(target=child, args=(q,))\n"
            "    p.start()\n"
            "    p.join(60)\n"
            "    print(p.exitcode, q.get(timeout=5) if p.exitcode == 0 else None)\n")
    env = {k: v for k, v in os.environ.items() if k != numpy_ops.NUMBA_ENV}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["0", "True"], got.stdout + got.stderr
