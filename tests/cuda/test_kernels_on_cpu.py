"""Every CUDA kernel body, run on the CPU, against the generic NumPy implementation.

The kernel objects' own parameter lists, preambles and loop bodies are compiled by g++
into one shared library (once per module). ``cpu_ops`` is the real ``CupyOps`` on
NumPy arrays with each kernel launch routed to that library, so these tests cover the
kernel bodies *and* the way CupyOps calls them (argument order, scalars, outputs,
in-place state), and assert that the kernel, not the generic fallback, ran.
Inputs include 0, -0, ±inf, NaN, subnormal and huge values; float32 and float64.
"""

import itertools

import numpy as np
import offline
import pytest
from tolerances import TOL

from gpunet.backend.cupy_ops import CupyOps
from gpunet.backend.geometry import ConvGeometry
from gpunet.backend.ops import Ops
from gpunet.cuda import conv
from gpunet.cuda.lazy import KERNELS, LazyKernel, all_kernels

offline.require_cupy()

DTYPES = ["float32", "float64"]
GENERIC = Ops(np)

# Mutants of real kernels: the comparisons below must catch them.
RELU_BACKWARD_AT_KINK = LazyKernel(
    "gpunet_relu_backward_mutant", "T dy, T y", "T dx",
    KERNELS["gpunet_relu_backward"].operation.replace("A(y) > A(0)", "A(y) >= A(0)"),
    preamble=KERNELS["gpunet_relu_backward"].preamble, doc="kink wrong", register=False)
IM2COL_SWAPPED_WINDOW = LazyKernel(
    "gpunet_im2col_mutant", conv.IM2COL.in_params, conv.IM2COL.out_params,
    conv.IM2COL.operation.replace("kj = t % kw;  t /= kw;", "kj = t % kh;  t /= kh;")
    .replace("ki = t % kh;", "ki = t % kw;").replace("c = t / kh;", "c = t / kw;"),
    scalars=conv.IM2COL.scalars, raw_ndim=conv.IM2COL.raw_ndim, doc="kh/kw swapped",
    register=False)
COL2IM_WITHOUT_ROW_DILATION = LazyKernel(
    "gpunet_col2im_mutant", conv.COL2IM.in_params, conv.COL2IM.out_params,
    conv.COL2IM.operation.replace("ki * dh <= py", "ki <= py").replace("py - ki * dh", "py - ki"),
    preamble=conv.COL2IM.preamble, scalars=conv.COL2IM.scalars, raw_ndim=conv.COL2IM.raw_ndim,
    doc="row dilation dropped", register=False)
MUTANTS = [RELU_BACKWARD_AT_KINK, IM2COL_SWAPPED_WINDOW, COL2IM_WITHOUT_ROW_DILATION]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    assert RELU_BACKWARD_AT_KINK.operation != KERNELS["gpunet_relu_backward"].operation
    assert IM2COL_SWAPPED_WINDOW.operation != conv.IM2COL.operation
    assert "ki * dh" not in COL2IM_WITHOUT_ROW_DILATION.operation and "ki * dh" in conv.COL2IM.operation
    return offline.CpuLibrary(all_kernels() + MUTANTS, tmp_path_factory.mktemp("cpu_kernels"))


@pytest.fixture
def cpu_ops(library, monkeypatch):
    """``CupyOps(numpy)`` whose kernels run the compiled bodies; ``.runners`` by name."""
    ops = CupyOps(np)
    ops.runners = {}
    for lazy in all_kernels():
        runner = library.kernel(lazy)
        monkeypatch.setattr(lazy, "_kernel", runner)
        ops.runners[lazy.name] = runner
    return ops


def _copy(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def compare(ops, kernel, method, *args, signed_zeros=True, state=()):
    """``ops.<method>(*args)`` against ``Ops(numpy).<method>`` on copies of ``args``.

    Checks the result, that exactly one launch of ``kernel`` happened, that the inputs
    were not changed, and (``state``: argument positions updated in place) the state.
    """
    mine, theirs = [_copy(a) for a in args], [_copy(a) for a in args]
    launches = ops.runners[kernel].calls
    with np.errstate(all="ignore"):
        got = getattr(ops, method)(*mine)
        want = getattr(GENERIC, method)(*theirs)
    assert ops.runners[kernel].calls == launches + 1, f"{method} did not launch {kernel} once"
    tol = TOL[np.dtype(want.dtype)]
    offline.assert_matches(got, want, tol, signed_zeros, what=method)
    for i, (before, after, expected) in enumerate(zip(args, mine, theirs)):
        if not isinstance(before, np.ndarray):
            continue
        if i in state:
            offline.assert_matches(after, expected, tol, signed_zeros, what=f"{method} arg {i}")
        else:
            np.testing.assert_array_equal(after, before, err_msg=f"{method} changed input {i}")
    return got, mine


def _layout(a, layout):
    """``a`` (1-D, length 505 = 5*101) as is, or as a non-contiguous 2-D view."""
    return a if layout == "flat" else a.reshape(5, 101).T


LAYOUT = pytest.mark.parametrize("layout", ["flat", "strided"])


# --- activations ----------------------------------------------------------------------


@LAYOUT
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid(cpu_ops, rng, dtype, layout):
    x = np.concatenate([offline.special_values(dtype)] * 20
                       + [rng.standard_normal(85).astype(dtype)])
    compare(cpu_ops, "gpunet_sigmoid_forward", "sigmoid", _layout(x, layout))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_accurate_relative_to_its_value_on_both_tails(cpu_ops, dtype):
    """Against 1 / (1 + exp(-x)) with 40 digits (mpmath), down to the smallest normal result:
    within 3 eps relative (exp, 1 + e and the division each round once)."""
    mpmath = pytest.importorskip("mpmath")
    lo = float(np.log(np.finfo(dtype).smallest_normal)) + 1
    x = np.linspace(lo, -lo, 1001).astype(dtype)
    launches = cpu_ops.runners["gpunet_sigmoid_forward"].calls
    got = cpu_ops.sigmoid(x).astype(np.float64)
    assert cpu_ops.runners["gpunet_sigmoid_forward"].calls == launches + 1
    with mpmath.workdps(40):
        want = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x])
    assert np.max(np.abs(got - want) / want) <= 3 * np.finfo(dtype).eps


@LAYOUT
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method,kernel", [("sigmoid_backward", "gpunet_sigmoid_backward"),
                                           ("relu_backward", "gpunet_relu_backward")])
def test_backward_from_saved_output(cpu_ops, rng, dtype, layout, method, kernel):
    dy, y = (_layout(a[:505], layout) for a in offline.value_grid(dtype, rng, 2))
    compare(cpu_ops, kernel, method, dy, y)


@LAYOUT
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu_backward(cpu_ops, rng, dtype, layout, slope):
    dy, x = (_layout(a[:505], layout) for a in offline.value_grid(dtype, rng, 2))
    compare(cpu_ops, "gpunet_leaky_relu_backward", "leaky_relu_backward", dy, x, slope)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_broadcasts_bias_over_rows(cpu_ops, rng, dtype):
    s = offline.special_values(dtype)
    x = np.concatenate([np.repeat(s[:, None], s.size, axis=1),
                        rng.standard_normal((7, s.size)).astype(dtype)])
    b = s.copy()  # every x value meets every bias value
    # numpy.maximum's sign for a +-0 tie depends on its SIMD path: zeros compared by value
    compare(cpu_ops, "gpunet_bias_relu_forward", "bias_relu", x, b, signed_zeros=False)
    strided = np.asfortranarray(x)
    compare(cpu_ops, "gpunet_bias_relu_forward", "bias_relu", strided, b, signed_zeros=False)


def test_mutated_relu_kernel_is_caught(library, rng):
    dy, y = offline.value_grid("float32", rng, 2)
    mutant = library.kernel(RELU_BACKWARD_AT_KINK)(dy, y)
    with pytest.raises(AssertionError, match="elements differ"):
        offline.assert_matches(mutant, GENERIC.relu_backward(dy, y), TOL[np.dtype("float32")])


# --- optimizer updates ------------------------------------------------------------------


def _state(dtype, rng, layout):
    w, dw, v = (_layout(a[:505], layout) for a in offline.value_grid(dtype, rng, 3))
    return w, dw, v


@LAYOUT
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_momentum_in_place(cpu_ops, rng, dtype, layout):
    w, dw, v = _state(dtype, rng, layout)
    got, (w_after, _, _, _, _) = compare(cpu_ops, "gpunet_sgd_momentum", "sgd_momentum",
                                         w, dw, v, 1e-2, 0.9, state=(0, 2))
    assert got is w_after, "sgd_momentum must update w in place and return it"


@LAYOUT
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 10])
def test_adam_in_place(cpu_ops, rng, dtype, layout, t):
    w, dw, m = _state(dtype, rng, layout)
    v = np.abs(_copy(m))[::-1]
    got, mine = compare(cpu_ops, "gpunet_adam", "adam", w, dw, m, v, t, 1e-3, 0.9, 0.999,
                        1e-8, state=(0, 2, 3))
    assert got is mine[0], "adam must update w in place and return it"


# --- convolution -----------------------------------------------------------------------

# (x shape (N, C, H, W), (kh, kw), stride, pad, dilation): non-square kernels, stride 1-3,
# padding, dilation, and inputs whose last rows/columns no window reaches (floored)
CONV_CASES = [
    ((2, 3, 7, 6), (3, 2), (2, 3), (1, 2), (1, 1)),
    ((1, 2, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 1, 8, 9), (2, 4), (3, 2), (0, 1), (1, 1)),
    ((1, 3, 4, 4), (1, 1), (2, 2), (0, 0), (1, 1)),
    ((2, 2, 6, 7), (5, 3), (3, 3), (2, 1), (1, 1)),
    ((1, 1, 2, 3), (4, 4), (1, 2), (2, 2), (1, 1)),  # kernel larger than the unpadded input
    ((3, 2, 9, 5), (2, 3), (2, 1), (0, 2), (1, 1)),
    ((2, 2, 8, 7), (3, 3), (2, 2), (0, 0), (1, 1)),  # floored in both directions
    ((1, 2, 10, 9), (4, 2), (3, 2), (1, 0), (1, 1)),  # floored
    ((2, 2, 9, 8), (3, 3), (1, 1), (2, 2), (2, 2)),  # dilated
    ((1, 3, 11, 10), (3, 3), (2, 3), (1, 2), (2, 1)),  # dilated, strided, floored
    ((2, 1, 7, 7), (2, 2), (1, 1), (3, 3), (3, 2)),  # dilated, padding beyond the extent
]
CONV_IDS = ["x{}-k{}x{}-s{}{}-p{}{}-d{}{}".format("x".join(map(str, s)), *k, *st, *p, *d)
            for s, k, st, p, d in CONV_CASES]
CONV = pytest.mark.parametrize("x_shape,kernel,stride,pad,dilation", CONV_CASES, ids=CONV_IDS)


def _geo(x_shape, kernel, stride, pad, dilation, f=1):
    return ConvGeometry(x_shape, (f, x_shape[1], *kernel), stride, pad, dilation)


def naive_im2col(x, geo):
    """Loop reference: cols[(c,i,j), (n,oh,ow)] = x[n, c, oh*sh-ph+i*dh, ow*sw-pw+j*dw] or 0."""
    n, c, h, w = x.shape
    _, _, kh, kw = geo.w_shape
    (oh, ow), (sh, sw), (ph, pw), (dh, dw) = geo.out_hw, geo.stride, geo.pad, geo.dilation
    cols = np.zeros((c * kh * kw, n * oh * ow), x.dtype)
    for ci, i, j, ni, a, b in itertools.product(range(c), range(kh), range(kw), range(n),
                                               range(oh), range(ow)):
        y, xx = a * sh - ph + i * dh, b * sw - pw + j * dw
        if 0 <= y < h and 0 <= xx < w:
            cols[(ci * kh + i) * kw + j, (ni * oh + a) * ow + b] = x[ni, ci, y, xx]
    return cols


def _conv_input(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    specials = offline.special_values(dtype)
    flat[rng.choice(flat.size, size=min(flat.size, specials.size), replace=False)] = \
        specials[: min(flat.size, specials.size)]
    return x


def test_the_cases_cover_floored_and_dilated_geometries():
    geos = [_geo(*case) for case in CONV_CASES]
    floored = [g for g in geos if any((size + 2 * p - d * (k - 1) - 1) % s for size, k, s, p, d in
                                      zip(g.x_shape[2:], g.w_shape[2:], g.stride, g.pad, g.dilation))]
    assert len(floored) >= 3 and any(max(g.dilation) > 1 for g in floored)


@CONV
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col(cpu_ops, rng, dtype, x_shape, kernel, stride, pad, dilation):
    x = _conv_input(x_shape, dtype, rng)
    geo = _geo(x_shape, kernel, stride, pad, dilation)
    got, _ = compare(cpu_ops, "gpunet_im2col", "im2col", x, geo)
    offline.assert_matches(got, naive_im2col(x, geo), TOL[np.dtype(dtype)], what="im2col vs loops")


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_of_a_non_contiguous_input(cpu_ops, rng, dtype):
    x = np.moveaxis(rng.standard_normal((2, 7, 6, 3)).astype(dtype), 3, 1)  # NHWC memory
    assert not x.flags.c_contiguous
    compare(cpu_ops, "gpunet_im2col", "im2col", x, _geo(x.shape, (3, 2), (2, 1), (1, 0), (1, 1)))


@CONV
@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im(cpu_ops, rng, dtype, x_shape, kernel, stride, pad, dilation):
    geo = _geo(x_shape, kernel, stride, pad, dilation)
    cols = _conv_input((geo.rows, x_shape[0] * geo.out_hw[0] * geo.out_hw[1]), dtype, rng)
    compare(cpu_ops, "gpunet_col2im", "col2im", cols, geo)


@CONV
def test_col2im_is_the_adjoint_of_im2col(cpu_ops, rng, x_shape, kernel, stride, pad, dilation):
    geo = _geo(x_shape, kernel, stride, pad, dilation)
    x = rng.standard_normal(x_shape)
    cols = cpu_ops.im2col(x, geo)
    c = rng.standard_normal(cols.shape)
    back = cpu_ops.col2im(c, geo)
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


@CONV
@pytest.mark.parametrize("budget", [None, 1])
def test_the_convolution_layer_through_the_kernels(cpu_ops, rng, x_shape, kernel, stride, pad, dilation, budget):
    """CupyOps.conv2d_forward/backward (generic code, im2col/col2im kernels; ``budget=1``:
    one sample per chunk) against the generic NumPy code."""
    geo = _geo(x_shape, kernel, stride, pad, dilation, f=3)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(geo.w_shape), rng.standard_normal(3)
    dout = rng.standard_normal(geo.out_shape)
    got, saved = cpu_ops.conv2d_forward(x, w, b, geo, budget)
    want, want_saved = GENERIC.conv2d_forward(x, w, b, geo, budget)
    grads = cpu_ops.conv2d_backward(dout, w, geo, saved, True, budget)
    want_grads = GENERIC.conv2d_backward(dout, w, geo, want_saved, True, budget)
    assert cpu_ops.runners["gpunet_im2col"].calls > 0 and cpu_ops.runners["gpunet_col2im"].calls > 0
    for g, e in zip((got, *grads), (want, *want_grads)):
        np.testing.assert_allclose(g, e, **TOL[np.dtype("float64")])


def test_conv_kernels_on_an_empty_batch(cpu_ops):
    geo = _geo((0, 2, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1))
    assert cpu_ops.im2col(np.zeros((0, 2, 5, 5)), geo).shape == (18, 0)
    assert cpu_ops.col2im(np.zeros((18, 0)), geo).shape == (0, 2, 5, 5)


def test_mutated_im2col_kernel_is_caught(library, cpu_ops, rng, monkeypatch):
    monkeypatch.setattr(conv.IM2COL, "_kernel", library.kernel(IM2COL_SWAPPED_WINDOW))
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    geo = _geo(x.shape, (3, 2), (2, 3), (1, 2), (1, 1))
    with pytest.raises(AssertionError, match="elements differ"):
        offline.assert_matches(cpu_ops.im2col(x, geo), GENERIC.im2col(x, geo), TOL[x.dtype])


def test_mutated_col2im_dilation_is_caught(library, cpu_ops, rng, monkeypatch):
    monkeypatch.setattr(conv.COL2IM, "_kernel", library.kernel(COL2IM_WITHOUT_ROW_DILATION))
    geo = _geo((2, 2, 9, 8), (3, 3), (1, 1), (2, 2), (2, 2))
    cols = rng.standard_normal((geo.rows, 2 * geo.out_hw[0] * geo.out_hw[1]))
    with pytest.raises(AssertionError, match="elements differ"):
        offline.assert_matches(cpu_ops.col2im(cols, geo), GENERIC.col2im(cols, geo), TOL[cols.dtype])


# --- the generic fallback ---------------------------------------------------------------


def test_unsupported_inputs_take_the_generic_path(cpu_ops, rng):
    half = [rng.standard_normal(8).astype(np.float16) for _ in range(4)]
    half[3] = np.abs(half[3])
    w, dw, m, v = (a.copy() for a in half)
    cpu_ops.adam(w, dw, m, v, 1, 1e-3, 0.9, 0.999, 1e-3)  # float16 state: generic
    w2, dw2, m2, v2 = (a.copy() for a in half)
    GENERIC.adam(w2, dw2, m2, v2, 1, 1e-3, 0.9, 0.999, 1e-3)
    np.testing.assert_array_equal(w, w2)
    dy, y = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8)
    np.testing.assert_array_equal(cpu_ops.relu_backward(dy, y), GENERIC.relu_backward(dy, y))
    assert all(r.calls == 0 for r in cpu_ops.runners.values())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_uniform_without_seed_stays_below_one(dtype):
    """CupyOps.uniform draws with cupy.random; here a stand-in namespace whose generator
    returns the largest float32 below 1, which rounds to 1.0 in float16."""
    from types import SimpleNamespace

    def random(shape, dtype):
        return np.full(shape, np.nextafter(np.float32(1), np.float32(0)), dtype=dtype)

    fake = SimpleNamespace(random=SimpleNamespace(random=random), minimum=np.minimum)
    u = CupyOps(fake).uniform((3, 4), like=np.zeros(1, dtype))
    assert u.dtype == np.dtype(dtype) and u.shape == (3, 4)
    assert np.all(u < 1) and np.all(u > 0.99)
    seeded = CupyOps(fake).uniform((5,), like=np.zeros(1, dtype), seed=3)
    np.testing.assert_array_equal(seeded, GENERIC.uniform((5,), np.zeros(1, dtype), 3))
