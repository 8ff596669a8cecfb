"""Every ``NumpyOps`` override against the generic ``Ops`` on the same NumPy inputs.

Copies, selections, maxima and the optimizer updates (same operations in the same
order) must agree bit for bit, with the numba kernels and without them
(``assert_array_equal``: NaN equals NaN, -0.0 equals 0.0);
results that go through a GEMM may differ by BLAS blocking only, within the dtype's
tolerance. Geometries: non-square kernels, stride 1-3, pad 0-3, dilation 1-3, inputs
whose last rows no window reaches (floored output size), tiling and non-tiling pools,
max-pool ties and NaN, empty batches, and convolutions split by a tiny column budget.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from tolerances import tol

import gpunet
from gpunet import layers as L
from gpunet.backend import get_ops, numpy_ops
from gpunet.backend.geometry import ConvGeometry, PoolGeometry
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops
from gpunet.layers import conv as conv_layer

# inf - inf and 0 * inf in the special values are meant: no warnings for them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

GENERIC, FAST = Ops(np), NumpyOps(np)
DTYPES = [np.float32, np.float64]
eq = np.testing.assert_array_equal


@pytest.fixture(autouse=True, params=["kernels", "numpy-only"])
def fast_path(request, monkeypatch):
    """Every test twice: with the numba kernels (where installed) and on the NumPy path alone
    (what a user without numba runs), each decided afresh."""
    monkeypatch.setattr(numpy_ops, "_numba", {} if request.param == "kernels" else {"module": None})
    if request.param == "kernels" and numpy_ops.kernels() is None:
        pytest.skip("numba is not installed: the NumPy path is the one tested")


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, **tol(np.dtype(dtype)))


def special(dtype, rng, shape):
    """Random values with 0, -0, +-inf, NaN and ties sprinkled in."""
    a = np.asarray(rng.standard_normal(shape), dtype)  # an array also for shape ()
    flat = a.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, 12), replace=False)
    flat[picks] = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0] * 2, dtype)[: picks.size]
    return a


def test_get_ops_gives_numpy_ops():
    assert isinstance(get_ops(np), NumpyOps) and get_ops(np).name == "numpy"


# --- activations ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4, 5), (50, 100), (70_000,)])
def test_activations_match_bit_for_bit(dtype, shape):
    rng = np.random.default_rng(0)
    x, dy = special(dtype, rng, shape), special(dtype, rng, shape)
    for got in (FAST.sigmoid(x), FAST.sigmoid_backward(dy, x), FAST.relu_backward(dy, x),
                FAST.leaky_relu_backward(dy, x, 0.1)):
        assert isinstance(got, np.ndarray) and got.shape == shape  # arrays, also for 0-d inputs
    eq(FAST.relu_backward(dy, x), GENERIC.relu_backward(dy, x))
    eq(FAST.relu_backward(dy, np.maximum(x, 0)), GENERIC.relu_backward(dy, np.maximum(x, 0)))
    eq(FAST.leaky_relu_backward(dy, x, 0.1), GENERIC.leaky_relu_backward(dy, x, 0.1))
    eq(FAST.sigmoid(x), GENERIC.sigmoid(x))
    y = GENERIC.sigmoid(x)
    eq(FAST.sigmoid_backward(dy, y), GENERIC.sigmoid_backward(dy, y))
    if len(shape) >= 2:
        b = special(dtype, rng, shape[-1:])
        with np.errstate(invalid="ignore"):  # inf + -inf
            eq(FAST.bias_relu(x, b), GENERIC.bias_relu(x, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_relus_write_into_their_argument(dtype):
    rng = np.random.default_rng(1)
    x, dy = special(dtype, rng, (4, 3, 5, 5)), special(dtype, rng, (4, 3, 5, 5))
    want_fwd, want_bwd = GENERIC.relu_(x.copy()), GENERIC.relu_backward(dy, x)
    a, d = x.copy(), dy.copy()
    assert FAST.relu_(a) is a and FAST.relu_backward_(d, x) is d
    eq(a, want_fwd)
    eq(d, want_bwd)
    eq(want_fwd, np.maximum(x, 0.0))


def test_relu_backward_of_a_non_contiguous_input():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((6, 8))[:, ::2], rng.standard_normal((8, 6)).T[:, ::2]
    assert not (x.flags.c_contiguous or dy.flags.c_contiguous)
    eq(FAST.relu_backward(dy, x), GENERIC.relu_backward(dy, x))


def test_mixed_dtypes_fall_back_to_the_generic_version():
    x = np.linspace(-1, 1, 9)
    dy = np.ones(9, np.float32)
    eq(FAST.relu_backward(dy, x), GENERIC.relu_backward(dy, x))
    assert FAST.relu_backward(dy, x).dtype == GENERIC.relu_backward(dy, x).dtype


# --- im2col / col2im ------------------------------------------------------------------------
GEOMETRIES = [  # n, c, h, w, kh, kw, (sh, sw), (ph, pw), (dh, dw)
    (2, 3, 9, 5, 3, 2, (1, 1), (1, 0), (1, 1)),
    (1, 2, 6, 7, 2, 3, (2, 3), (2, 1), (1, 1)),
    (3, 1, 8, 6, 5, 1, (3, 1), (2, 0), (1, 1)),
    (2, 2, 6, 2, 1, 1, (1, 2), (0, 2), (1, 1)),
    (1, 3, 9, 9, 3, 3, (1, 1), (2, 2), (1, 1)),  # pad > kernel - 1: no full-convolution dx
    (2, 2, 9, 7, 4, 3, (2, 2), (1, 1), (1, 1)),
    (5, 3, 8, 8, 7, 7, (1, 1), (3, 3), (1, 1)),  # the CS231n first layer, smaller
    # floored output sizes: the last rows / columns of x meet no window
    (2, 3, 8, 7, 3, 3, (2, 2), (0, 0), (1, 1)),
    (3, 2, 10, 9, 4, 2, (3, 2), (1, 0), (1, 1)),
    (1, 2, 7, 11, 2, 5, (3, 4), (2, 1), (1, 1)),
    # dilation
    (2, 2, 9, 8, 3, 3, (1, 1), (2, 2), (2, 2)),  # stride 1: padded rows, full-convolution dx
    (2, 3, 10, 9, 3, 2, (1, 1), (1, 0), (3, 2)),  # pad below the dilated extent
    (1, 2, 11, 10, 3, 3, (2, 3), (1, 2), (2, 1)),  # strided and floored
    (2, 1, 7, 7, 2, 2, (1, 1), (3, 3), (2, 2)),  # pad > dilation*(k - 1): col2im dx
]
CONV_GEOMETRIES = pytest.mark.parametrize(
    "geom", GEOMETRIES,
    ids=["x{}.{}.{}.{}-k{}.{}-s{}{}-p{}{}-d{}{}".format(*g[:6], *g[6], *g[7], *g[8]) for g in GEOMETRIES])


def _geo(geom, f=4) -> ConvGeometry:
    n, c, h, w, kh, kw, stride, pad, dilation = geom
    return ConvGeometry((n, c, h, w), (f, c, kh, kw), stride, pad, dilation)


def test_the_geometries_cover_floored_and_dilated_cases():
    geos = [_geo(g) for g in GEOMETRIES]
    floored = [g for g in geos if any((size + 2 * p - d * (k - 1) - 1) % s
                                      for size, k, s, p, d in zip(g.x_shape[2:], g.w_shape[2:], g.stride, g.pad,
                                                                  g.dilation))]
    assert len(floored) >= 4 and any(max(g.dilation) > 1 for g in floored)
    assert any(max(g.dilation) > 1 and g.stride == (1, 1) for g in geos)


@pytest.mark.parametrize("dtype", DTYPES)
@CONV_GEOMETRIES
def test_im2col_and_col2im_match_exactly(dtype, geom):
    geo = _geo(geom)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(geo.x_shape).astype(dtype)
    cols = GENERIC.im2col(x, geo)
    eq(FAST.im2col(x, geo), cols)
    eq(FAST.im2col(x[:, :, ::-1], geo), GENERIC.im2col(x[:, :, ::-1], geo))
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    eq(FAST.col2im(dcols, geo), GENERIC.col2im(dcols, geo))


# --- the convolution layer ------------------------------------------------------------------
def _conv_case(geom, dtype, f=4, seed=4):
    geo = _geo(geom, f)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geo.x_shape).astype(dtype)
    wt = rng.standard_normal(geo.w_shape).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    dout = rng.standard_normal(geo.out_shape).astype(dtype)
    return geo, x, wt, b, dout


def _conv(ops, geo, x, wt, b, dout, budget, compute_dx=True):
    out, saved = ops.conv2d_forward(x, wt, b, geo, budget)
    return (out, *ops.conv2d_backward(dout, wt, geo, saved, compute_dx, budget))


@pytest.mark.parametrize("dtype", DTYPES)
@CONV_GEOMETRIES
def test_conv_matches_the_generic_version(dtype, geom):
    geo, x, wt, b, dout = _conv_case(geom, dtype)
    want = _conv(GENERIC, geo, x, wt, b, dout, None)
    for budget in (None, 1, 3000):  # 1 byte: one sample per chunk
        got = _conv(FAST, geo, x, wt, b, dout, budget)
        for g, w in zip(got, want):
            close(g, w, dtype)
    got = _conv(FAST, geo, x, wt, b, dout, None, compute_dx=False)
    assert got[1] is None
    close(got[2], want[2], dtype)


@pytest.mark.parametrize("ops", [GENERIC, FAST], ids=["generic", "numpy"])
@pytest.mark.parametrize("budget", [None, 1])
def test_conv_of_an_empty_batch(ops, budget):
    geo = ConvGeometry((0, 2, 6, 5), (3, 2, 3, 3), (1, 1), (1, 1))
    x, wt, b = np.zeros(geo.x_shape), np.ones(geo.w_shape), np.ones(3)
    out, dx, dw, db = _conv(ops, geo, x, wt, b, np.zeros(geo.out_shape), budget)
    assert out.shape == (0, 3, 6, 5) and dx.shape == x.shape
    eq(dw, np.zeros(geo.w_shape))
    eq(db, np.zeros(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_budget_split_gives_the_unsplit_results(dtype, monkeypatch):
    """Many chunks (tiny budget) against one chunk (no budget, a large speed chunk): the same
    sums, up to BLAS blocking (its kernels treat the last columns of a GEMM apart) and the
    order in which dw and db add up the chunks."""
    monkeypatch.setattr(numpy_ops, "CHUNK_BYTES", 2**40)
    geo, x, wt, b, dout = _conv_case((7, 3, 9, 8, 3, 3, (1, 1), (1, 1), (1, 1)), dtype, f=5)
    whole = _conv(FAST, geo, x, wt, b, dout, None)
    for budget in (1, 4000, 20000):
        split = _conv(FAST, geo, x, wt, b, dout, budget)
        for g, w in zip(split, whole):
            close(g, w, dtype)
    generic_split = _conv(GENERIC, geo, x, wt, b, dout, 1)
    for g, w in zip(generic_split, whole):
        close(g, w, dtype)


def test_conv_of_non_contiguous_inputs():
    geo, x, wt, b, dout = _conv_case((3, 2, 8, 8, 3, 2, (1, 1), (1, 1), (1, 1)), np.float64)
    xt = np.asfortranarray(x)
    dt = dout[:, :, :, ::-1].copy()[:, :, :, ::-1]
    for g, w in zip(_conv(FAST, geo, xt, wt, b, dt, None), _conv(GENERIC, geo, x, wt, b, dout, None)):
        close(g, w, np.float64)


@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_column_budget_setting_keeps_layer_results(backend):
    """gpunet.layers.conv.set_column_budget: a tiny budget changes nothing visible."""
    _, x, wt, b, dout = _conv_case((5, 3, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1)), np.float64)
    with gpunet.use_backend(backend):
        args = [gpunet.asarray(a) for a in (x, wt, b)]
        d = gpunet.asarray(dout)
        param = {"stride": 1, "pad": 1}
        out, cache = L.conv_forward(*args, param)
        want = [gpunet.to_numpy(a) for a in (out, *L.conv_backward(d, cache))]
        old = conv_layer.set_column_budget(1)
        try:
            assert conv_layer.get_column_budget() == 1
            out, cache = L.conv_forward(*args, param)
            got = [gpunet.to_numpy(a) for a in (out, *L.conv_backward(d, cache))]
        finally:
            conv_layer.set_column_budget(old)
    for g, w in zip(got, want):
        close(g, w, np.float64)


def test_column_budget_rejects_nonsense():
    for bad in (0, -5, 1.5, True, "1"):
        with pytest.raises(ValueError, match="set_column_budget"):
            conv_layer.set_column_budget(bad)


@pytest.mark.parametrize("value,budget", [("0.5", 2**19), ("", 256 * 2**20), (None, 256 * 2**20)])
def test_column_budget_from_the_environment(monkeypatch, value, budget):
    if value is None:
        monkeypatch.delenv(conv_layer.BUDGET_ENV, raising=False)
    else:
        monkeypatch.setenv(conv_layer.BUDGET_ENV, value)
    monkeypatch.setattr(conv_layer, "_column_budget", None)  # not read yet
    assert conv_layer.get_column_budget() == budget


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_a_bad_column_budget_in_the_environment_is_reported_when_used(value):
    """Importing gpunet (and its layers) never reads it; the first convolution says which
    variable is wrong."""
    code = ("import numpy as np, gpunet, gpunet.layers as L\n"
            "x, w = np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2))\n"
            "try:\n"
            "    L.conv_forward(x, w, np.zeros(1), {})\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, **{conv_layer.BUDGET_ENV: value})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{conv_layer.BUDGET_ENV} must be a number of MiB > 0" in proc.stdout and repr(value) in proc.stdout


# --- conv - relu - max pool ------------------------------------------------------------------
FUSED = [  # conv input (h, w), conv (pad, dilation), pool (kh, kw, stride)
    ((8, 10), (1, 1), (2, 2, (2, 2))),
    ((9, 7), (1, 1), (3, 3, (2, 2))),
    ((8, 9), (1, 1), (2, 3, (1, 3))),
    ((8, 5), (1, 1), (2, 2, (3, 3))),
    ((9, 7), (1, 1), (2, 2, (2, 2))),  # the last conv row and column meet no pooling window
    ((9, 8), (2, 2), (3, 2, (2, 3))),  # dilated convolution, floored pool
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FUSED)
@pytest.mark.parametrize("budget", [None, 1])
def test_fused_conv_relu_pool_matches_the_generic_composition(dtype, case, budget):
    (h, w), (pad, dil), (kh, kw, pstride) = case
    geo, x, wt, b, _ = _conv_case((5, 3, h, w, 3, 3, (1, 1), (pad, pad), (dil, dil)), dtype, f=4)
    x = np.round(x * 2) / 2  # ties in the pooling windows, zeros at the ReLU kink
    pool = PoolGeometry(geo.out_shape, (kh, kw), pstride)
    rng = np.random.default_rng(8)
    dout = rng.standard_normal(pool.out_shape).astype(dtype)
    results = []
    for ops in (GENERIC, FAST):
        s, out, saved = ops.conv_relu_pool_forward(x, wt, b, geo, pool, budget)
        grads = ops.conv_relu_pool_backward(dout, s, out, wt, geo, pool, saved, True, budget)
        results.append((s, out, *grads))
    for f, g in zip(*reversed(results)):
        close(f, g, dtype)
    s, out, saved = FAST.conv_relu_pool_forward(x, wt, b, geo, pool, budget)
    dx, dw, db = FAST.conv_relu_pool_backward(dout, s, out, wt, geo, pool, saved, False, budget)
    assert dx is None
    close(dw, results[0][3], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@CONV_GEOMETRIES
@pytest.mark.parametrize("budget", [None, 1])
def test_fused_conv_relu_matches_the_generic_composition(dtype, geom, budget):
    """Within the GEMM tolerance of the generic Ops, and bit for bit the NumPy conv followed
    by the NumPy ReLU (the fused version only changes where the ReLU runs)."""
    geo, x, wt, b, dout = _conv_case(geom, dtype)
    x = np.round(x * 2) / 2  # zeros at the ReLU kink
    results = []
    for ops in (GENERIC, FAST):
        s, saved = ops.conv_relu_forward(x, wt, b, geo, budget)
        results.append((s, *ops.conv_relu_backward(dout, s, wt, geo, saved, True, budget)))
    for f, g in zip(*results):
        close(f, g, dtype)
    a, saved = FAST.conv2d_forward(x, wt, b, geo, budget)
    s = np.maximum(a, 0)
    unfused = (s, *FAST.conv2d_backward(FAST.relu_backward(dout, s), wt, geo, saved, True, budget))
    for f, g in zip(results[1], unfused):
        eq(f, g)
    s, saved = FAST.conv_relu_forward(x, wt, b, geo, budget)
    dx, dw, _ = FAST.conv_relu_backward(dout, s, wt, geo, saved, False, budget)
    assert dx is None
    eq(dw, unfused[2])


def test_sandwich_conv_relu_pool_keeps_its_errors_and_results():
    _, x, wt, b, _ = _conv_case((2, 3, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1)), np.float64)
    out, cache = L.conv_relu_pool_forward(x, wt, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2})
    a, _ = L.conv_forward(x, wt, b, {"stride": 1, "pad": 1})
    want, _ = L.max_pool_forward(np.maximum(a, 0), {"pool_height": 2, "pool_width": 2})
    close(out, want, np.float64)
    with pytest.raises(ValueError, match="max_pool_forward: the height 8 of x is smaller than the window 9"):
        L.conv_relu_pool_forward(x, wt, b, {"stride": 1, "pad": 1}, {"pool_height": 9, "pool_width": 2})
    with pytest.raises(ValueError, match="conv_forward"):
        L.conv_relu_pool_forward(x, wt[:, :2], b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2})
    with pytest.raises(ValueError, match="max_pool_backward: dout must have shape"):
        L.conv_relu_pool_backward(np.ones((2, 4, 3, 3)), cache)


@pytest.mark.parametrize("compute_dx", [True, False])
def test_conv_relu_pool_of_an_empty_batch(compute_dx):
    x, wt, b = np.zeros((0, 2, 6, 6)), np.ones((3, 2, 3, 3)), np.ones(3)
    out, cache = L.conv_relu_pool_forward(x, wt, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2})
    assert out.shape == (0, 3, 3, 3)
    dx, dw, db = L.conv_relu_pool_backward(out, cache, compute_dx)
    assert dx is None if not compute_dx else dx.shape == x.shape
    eq(dw, np.zeros(wt.shape))
    eq(db, np.zeros(3))


# --- pooling -----------------------------------------------------------------------------------
POOLS = [  # h, w, kh, kw, (sh, sw): tiling, overlapping, gapped, floored, non-square
    (8, 8, 2, 2, (2, 2)),
    (9, 7, 3, 1, (3, 1)),
    (7, 9, 3, 3, (2, 2)),
    (9, 10, 2, 3, (1, 1)),
    (10, 10, 2, 2, (4, 4)),
    (6, 9, 2, 3, (2, 3)),
    (5, 5, 1, 1, (1, 1)),
    (9, 7, 2, 2, (2, 2)),  # floored: the last row and column meet no window
    (8, 11, 3, 2, (2, 3)),
]


def _pools(ties, nans, dtype, seed=5):
    for h, w, kh, kw, stride in POOLS:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((3, 2, h, w)).astype(dtype)
        if ties:
            x = np.round(x).astype(dtype)  # many equal maxima per window
        if nans:
            x.reshape(-1)[rng.choice(x.size, size=x.size // 5, replace=False)] = np.nan
        yield PoolGeometry(x.shape, (kh, kw), stride), x, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties,nans", [(False, False), (True, False), (True, True)])
def test_pooling_matches_bit_for_bit(dtype, ties, nans):
    for geo, x, rng in _pools(ties, nans, dtype):
        out = GENERIC.max_pool(x, geo)
        eq(FAST.max_pool(x, geo), out)
        dout = special(dtype, rng, out.shape)
        eq(FAST.max_pool_backward(dout, x, out, geo), GENERIC.max_pool_backward(dout, x, out, geo))
        eq(FAST.avg_pool(x, geo), GENERIC.avg_pool(x, geo))
        eq(FAST.avg_pool_backward(dout, geo), GENERIC.avg_pool_backward(dout, geo))


def test_max_pool_ties_go_to_the_first_maximum_in_every_block():
    """More samples than one block of the blockwise backward; all-equal windows."""
    x = np.ones((40, 3, 8, 8))
    geo = PoolGeometry(x.shape, (2, 2), (2, 2))
    out = FAST.max_pool(x, geo)
    dx = FAST.max_pool_backward(np.full(out.shape, 2.0), x, out, geo)
    eq(dx[:, :, 0::2, 0::2], 2.0)
    eq(dx[:, :, 1::2, :], 0.0)
    eq(dx[:, :, :, 1::2], 0.0)


# --- GEMM shapes and optimizers ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5])
def test_matmul_tn(dtype, n):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((n, 7)).astype(dtype), rng.standard_normal((n, 4)).astype(dtype)
    close(FAST.matmul_tn(a, b), GENERIC.matmul_tn(a, b), dtype)
    assert FAST.matmul_tn(a, b).shape == (7, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (6, 5), (0, 3), (301, 500)])  # 0-d, empty, small, a first layer's weight
@pytest.mark.parametrize("grad_layout", ["contiguous", "transposed"])
def test_optimizer_updates_match_bit_for_bit(dtype, shape, grad_layout):
    rng = np.random.default_rng(7)
    w0, m0, dw = (np.asarray(rng.standard_normal(shape), dtype) for _ in range(3))
    v0 = np.asarray(rng.random(shape), dtype)
    if grad_layout == "transposed":
        dw = np.ascontiguousarray(dw.T).T
    results = []
    for ops in (GENERIC, FAST):
        w = w0.copy()
        ops.sgd(w, dw, 0.1)
        w2, v2 = w0.copy(), m0.copy()
        ops.sgd_momentum(w2, dw, v2, 0.1, 0.9)
        w3, m3, v3 = w0.copy(), m0.copy(), v0.copy()
        for t in (1, 2, 3):
            ops.adam(w3, dw, m3, v3, t, 1e-3, 0.9, 0.999, 1e-8)
        results.append((w, w2, v2, w3, m3, v3))
    for g, f in zip(*results):
        eq(f, g)


def test_scratch_buffers_never_leak_into_results():
    """A second call reuses the scratch; the first call's results must not change."""
    geo, x, wt, b, dout = _conv_case((3, 2, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1)), np.float64)
    first = [a.copy() for a in _conv(FAST, geo, x, wt, b, dout, None)]
    kept = _conv(FAST, geo, x, wt, b, dout, None)
    _conv(FAST, geo, x * 2, wt, b, dout * 3, None)
    for a, k in zip(first, kept):
        eq(k, a)


def test_every_override_is_tested():
    overridden = {name for name, fn in vars(NumpyOps).items() if callable(fn) and not name.startswith("_")}
    tested = {"relu_backward", "relu_backward_", "relu_", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
              "bias_relu", "im2col", "col2im", "conv2d_forward", "conv2d_backward", "max_pool",
              "max_pool_backward", "avg_pool", "avg_pool_backward", "matmul_tn", "sgd", "sgd_momentum", "adam",
              "conv_relu_pool_forward", "conv_relu_pool_backward", "conv_relu_forward", "conv_relu_backward"}
    assert overridden <= tested, f"untested NumpyOps overrides: {sorted(overridden - tested)}"
