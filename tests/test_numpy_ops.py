"""Every ``NumpyOps`` override against the generic ``Ops`` on the same NumPy inputs.

Copies, selections, maxima and the optimizer updates (same operations in the same
order) must agree bit for bit (``assert_array_equal``: NaN equals NaN, -0.0 equals 0.0);
results that go through a GEMM may differ by BLAS blocking only, within the dtype's
tolerance. Geometries: non-square kernels, stride 1-3, pad 0-2, tiling and
non-tiling pools, max-pool ties, and convolutions split by a tiny column budget.
"""

import numpy as np
import pytest

import gpunet
from gpunet import layers as L
from gpunet.backend import get_ops
from gpunet.backend import numpy_ops
from gpunet.backend.numpy_ops import NumpyOps
from gpunet.backend.ops import Ops, conv_output_size
from gpunet.layers import conv as conv_layer
from tolerances import tol

# inf - inf and 0 * inf in the special values are meant: no warnings for them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

GENERIC, FAST = Ops(np), NumpyOps(np)
DTYPES = [np.float32, np.float64]
eq = np.testing.assert_array_equal


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, **tol(np.dtype(dtype)))


def special(dtype, rng, shape):
    """Random values with 0, -0, +-inf, NaN and ties sprinkled in."""
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, 12), replace=False)
    flat[picks] = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0] * 2, dtype)[: picks.size]
    return a


def test_get_ops_gives_numpy_ops():
    assert isinstance(get_ops(np), NumpyOps) and get_ops(np).name == "numpy"


# --- activations ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5), (50, 100), (70_000,)])
def test_activations_match_bit_for_bit(dtype, shape):
    rng = np.random.default_rng(0)
    x, dy = special(dtype, rng, shape), special(dtype, rng, shape)
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
GEOMETRIES = [  # n, c, oh, ow, kh, kw, (sh, sw), (ph, pw)
    (2, 3, 7, 5, 3, 2, (1, 1), (1, 0)),
    (1, 2, 4, 3, 2, 3, (2, 3), (2, 1)),
    (3, 1, 3, 6, 5, 1, (3, 1), (2, 0)),
    (2, 2, 6, 4, 1, 1, (1, 2), (0, 2)),
    (1, 3, 7, 7, 3, 3, (1, 1), (2, 2)),  # pad > kernel - 1: no full-convolution dx
    (2, 2, 5, 4, 4, 3, (2, 2), (1, 1)),
    (5, 3, 8, 8, 7, 7, (1, 1), (3, 3)),  # the CS231n first layer, smaller
]


def _input_hw(geom):
    """(H, W) that tile exactly: H + 2*pad - k = (OH - 1) * stride."""
    _, _, oh, ow, kh, kw, (sh, sw), (ph, pw) = geom
    return (oh - 1) * sh + kh - 2 * ph, (ow - 1) * sw + kw - 2 * pw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_and_col2im_match_exactly(dtype, geom):
    n, c, _, _, kh, kw, stride, pad = geom
    h, w = _input_hw(geom)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    cols = GENERIC.im2col(x, kh, kw, stride, pad)
    eq(FAST.im2col(x, kh, kw, stride, pad), cols)
    eq(FAST.im2col(x[:, :, ::-1], kh, kw, stride, pad), GENERIC.im2col(x[:, :, ::-1], kh, kw, stride, pad))
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    eq(FAST.col2im(dcols, x.shape, kh, kw, stride, pad), GENERIC.col2im(dcols, x.shape, kh, kw, stride, pad))


# --- the convolution layer ------------------------------------------------------------------
def _conv_case(geom, dtype, f=4, seed=4):
    n, c, _, _, kh, kw, stride, pad = geom
    h, w = _input_hw(geom)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    oh, ow = conv_output_size(h, kh, stride[0], pad[0]), conv_output_size(w, kw, stride[1], pad[1])
    dout = rng.standard_normal((n, f, oh, ow)).astype(dtype)
    return x, wt, b, dout


def _conv(ops, x, wt, b, dout, stride, pad, budget, compute_dx=True):
    out, saved = ops.conv2d_forward(x, wt, b, stride, pad, budget)
    return (out, *ops.conv2d_backward(dout, x.shape, wt, stride, pad, saved, compute_dx, budget))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_conv_matches_the_generic_version(dtype, geom):
    x, wt, b, dout = _conv_case(geom, dtype)
    stride, pad = geom[6], geom[7]
    want = _conv(GENERIC, x, wt, b, dout, stride, pad, None)
    for budget in (None, 1, 3000):  # 1 byte: one sample per chunk
        got = _conv(FAST, x, wt, b, dout, stride, pad, budget)
        for g, w in zip(got, want):
            close(g, w, dtype)
    got = _conv(FAST, x, wt, b, dout, stride, pad, None, compute_dx=False)
    assert got[1] is None
    close(got[2], want[2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_budget_split_gives_the_unsplit_results(dtype, monkeypatch):
    """Many chunks (tiny budget) against one chunk (no budget, a large speed chunk): the same
    sums, up to BLAS blocking (its kernels treat the last columns of a GEMM apart) and the
    order in which dw and db add up the chunks."""
    monkeypatch.setattr(numpy_ops, "CHUNK_BYTES", 2**40)
    x, wt, b, dout = _conv_case((7, 3, 9, 8, 3, 3, (1, 1), (1, 1)), dtype, f=5)
    assert x.shape == (7, 3, 9, 8)
    whole = _conv(FAST, x, wt, b, dout, (1, 1), (1, 1), None)
    for budget in (1, 4000, 20000):
        split = _conv(FAST, x, wt, b, dout, (1, 1), (1, 1), budget)
        for g, w in zip(split, whole):
            close(g, w, dtype)
    generic_split = _conv(GENERIC, x, wt, b, dout, (1, 1), (1, 1), 1)
    for g, w in zip(generic_split, whole):
        close(g, w, dtype)


def test_conv_of_non_contiguous_inputs():
    x, wt, b, dout = _conv_case((3, 2, 8, 8, 3, 2, (1, 1), (1, 1)), np.float64)
    xt = np.asfortranarray(x)
    dt = dout[:, :, :, ::-1].copy()[:, :, :, ::-1]
    for g, w in zip(_conv(FAST, xt, wt, b, dt, (1, 1), (1, 1), None),
                    _conv(GENERIC, x, wt, b, dout, (1, 1), (1, 1), None)):
        close(g, w, np.float64)


@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_column_budget_setting_keeps_layer_results(backend):
    """gpunet.layers.conv.set_column_budget: a tiny budget changes nothing visible."""
    x, wt, b, dout = _conv_case((5, 3, 8, 8, 3, 3, (1, 1), (1, 1)), np.float64)
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


def test_column_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv(conv_layer.BUDGET_ENV, "0.5")
    assert conv_layer._budget_from_env() == 2**19
    monkeypatch.setenv(conv_layer.BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="GPUNET_CONV_BUDGET_MB"):
        conv_layer._budget_from_env()
    monkeypatch.delenv(conv_layer.BUDGET_ENV)
    assert conv_layer._budget_from_env() == 256 * 2**20


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", [(2, 2, (2, 2), (8, 10)), (3, 3, (2, 2), (9, 7)), (2, 3, (1, 3), (8, 9)),
                                  (2, 2, (3, 3), (8, 5))])
@pytest.mark.parametrize("budget", [None, 1])
def test_fused_conv_relu_pool_matches_the_generic_composition(dtype, pool, budget):
    kh, kw, pstride, (h, w) = pool
    x, wt, b, _ = _conv_case((5, 3, h, w, 3, 3, (1, 1), (1, 1)), dtype, f=4)
    x = np.round(x * 2) / 2  # ties in the pooling windows, zeros at the ReLU kink
    pout = (conv_output_size(h, kh, pstride[0], 0), conv_output_size(w, kw, pstride[1], 0))
    assert (h - kh) % pstride[0] == 0 and (w - kw) % pstride[1] == 0
    p = (kh, kw, pstride, pout)
    rng = np.random.default_rng(8)
    dout = rng.standard_normal((5, 4) + pout).astype(dtype)
    results = []
    for ops in (GENERIC, FAST):
        s, out, saved = ops.conv_relu_pool_forward(x, wt, b, (1, 1), (1, 1), p, budget)
        grads = ops.conv_relu_pool_backward(dout, s, out, s, p, x.shape, wt, (1, 1), (1, 1), saved, True, budget)
        results.append((s, out, *grads))
    for f, g in zip(*reversed(results)):
        close(f, g, dtype)
    s, out, saved = FAST.conv_relu_pool_forward(x, wt, b, (1, 1), (1, 1), p, budget)
    dx, dw, db = FAST.conv_relu_pool_backward(dout, s, out, s, p, x.shape, wt, (1, 1), (1, 1), saved, False, budget)
    assert dx is None
    close(dw, results[0][3], dtype)


def test_sandwich_conv_relu_pool_keeps_its_errors_and_results():
    x, wt, b, _ = _conv_case((2, 3, 8, 8, 3, 3, (1, 1), (1, 1)), np.float64)
    out, cache = L.conv_relu_pool_forward(x, wt, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2})
    a, _ = L.conv_forward(x, wt, b, {"stride": 1, "pad": 1})
    want, _ = L.max_pool_forward(np.maximum(a, 0), {"pool_height": 2, "pool_width": 2})
    close(out, want, np.float64)
    with pytest.raises(ValueError, match="max_pool_forward: the height does not tile"):
        L.conv_relu_pool_forward(x, wt, b, {"stride": 1, "pad": 1}, {"pool_height": 3, "pool_width": 2})
    with pytest.raises(ValueError, match="conv_forward"):
        L.conv_relu_pool_forward(x, wt[:, :2], b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2})
    with pytest.raises(ValueError, match="max_pool_backward: dout must have shape"):
        L.conv_relu_pool_backward(np.ones((2, 4, 3, 3)), cache)


# --- pooling -----------------------------------------------------------------------------------
POOLS = [  # h, w, kh, kw, (sh, sw): tiling, overlapping, gapped, non-square
    (8, 8, 2, 2, (2, 2)),
    (9, 7, 3, 1, (3, 1)),
    (7, 9, 3, 3, (2, 2)),
    (9, 10, 2, 3, (1, 1)),
    (10, 10, 2, 2, (4, 4)),
    (6, 9, 2, 3, (2, 3)),
    (5, 5, 1, 1, (1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_bit_for_bit(dtype, geom, ties):
    h, w, kh, kw, stride = geom
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, h, w)).astype(dtype)
    if ties:
        x = np.round(x).astype(dtype)  # many equal maxima per window
    out_hw = (conv_output_size(h, kh, stride[0], 0), conv_output_size(w, kw, stride[1], 0))
    out = GENERIC.max_pool(x, kh, kw, stride, out_hw)
    eq(FAST.max_pool(x, kh, kw, stride, out_hw), out)
    dout = special(dtype, rng, out.shape)
    eq(FAST.max_pool_backward(dout, x, out, kh, kw, stride, out_hw),
       GENERIC.max_pool_backward(dout, x, out, kh, kw, stride, out_hw))
    eq(FAST.avg_pool(x, kh, kw, stride, out_hw), GENERIC.avg_pool(x, kh, kw, stride, out_hw))
    eq(FAST.avg_pool_backward(dout, x.shape, kh, kw, stride, out_hw),
       GENERIC.avg_pool_backward(dout, x.shape, kh, kw, stride, out_hw))


def test_max_pool_ties_go_to_the_first_maximum_in_every_block():
    """More samples than one block of the blockwise backward; all-equal windows."""
    x = np.ones((40, 3, 8, 8))
    out = FAST.max_pool(x, 2, 2, (2, 2), (4, 4))
    dx = FAST.max_pool_backward(np.full(out.shape, 2.0), x, out, 2, 2, (2, 2), (4, 4))
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
@pytest.mark.parametrize("shape", [(6, 5), (0, 3), (301, 500)])  # empty, small, and a first-layer-sized weight
@pytest.mark.parametrize("grad_layout", ["contiguous", "transposed"])
def test_optimizer_updates_match_bit_for_bit(dtype, shape, grad_layout):
    rng = np.random.default_rng(7)
    w0, m0, v0 = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype), rng.random(shape).astype(dtype)
    dw = rng.standard_normal(shape).astype(dtype)
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
    x, wt, b, dout = _conv_case((3, 2, 8, 8, 3, 3, (1, 1), (1, 1)), np.float64)
    first = [a.copy() for a in _conv(FAST, x, wt, b, dout, (1, 1), (1, 1), None)]
    kept = _conv(FAST, x, wt, b, dout, (1, 1), (1, 1), None)
    _conv(FAST, x * 2, wt, b, dout * 3, (1, 1), (1, 1), None)
    for a, k in zip(first, kept):
        eq(k, a)


def test_every_override_is_tested():
    overridden = {name for name, fn in vars(NumpyOps).items() if callable(fn) and not name.startswith("_")}
    tested = {"relu_backward", "relu_backward_", "relu_", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
              "bias_relu", "im2col", "col2im", "conv2d_forward", "conv2d_backward", "max_pool",
              "max_pool_backward", "avg_pool", "avg_pool_backward", "matmul_tn", "sgd", "sgd_momentum", "adam",
              "conv_relu_pool_forward", "conv_relu_pool_backward"}
    assert overridden <= tested, f"untested NumpyOps overrides: {sorted(overridden - tested)}"
