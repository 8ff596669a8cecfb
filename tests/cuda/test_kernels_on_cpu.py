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
import pytest

import offline
from gpunet.backend.ops import Ops, conv_output_size
from gpunet.cuda import conv
from gpunet.cuda.lazy import KERNELS, LazyKernel, all_kernels
from gpunet.cuda.ops import CupyOps
from tolerances import TOL

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
MUTANTS = [RELU_BACKWARD_AT_KINK, IM2COL_SWAPPED_WINDOW]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    assert RELU_BACKWARD_AT_KINK.operation != KERNELS["gpunet_relu_backward"].operation
    assert IM2COL_SWAPPED_WINDOW.operation != conv.IM2COL.operation
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

# (x shape (N, C, H, W), (kh, kw), stride, pad): non-square kernels, stride 1-3, padding
CONV_CASES = [
    ((2, 3, 7, 6), (3, 2), (2, 3), (1, 2)),
    ((1, 2, 5, 5), (3, 3), (1, 1), (1, 1)),
    ((2, 1, 8, 9), (2, 4), (3, 2), (0, 1)),
    ((1, 3, 4, 4), (1, 1), (2, 2), (0, 0)),
    ((2, 2, 6, 7), (5, 3), (3, 3), (2, 1)),
    ((1, 1, 2, 3), (4, 4), (1, 2), (2, 2)),  # kernel larger than the unpadded input
    ((3, 2, 9, 5), (2, 3), (2, 1), (0, 2)),
]
CONV_IDS = ["x{}-k{}x{}-s{}{}-p{}{}".format("x".join(map(str, s)), *k, *st, *p)
            for s, k, st, p in CONV_CASES]
CONV = pytest.mark.parametrize("x_shape,kernel,stride,pad", CONV_CASES, ids=CONV_IDS)


def naive_im2col(x, kh, kw, stride, pad):
    """Loop reference: cols[(c,i,j), (n,oh,ow)] = x[n, c, oh*sh-ph+i, ow*sw-pw+j] or 0."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, pad
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    cols = np.zeros((c * kh * kw, n * oh * ow), x.dtype)
    for ci, i, j, ni, a, b in itertools.product(range(c), range(kh), range(kw), range(n),
                                               range(oh), range(ow)):
        y, xx = a * sh - ph + i, b * sw - pw + j
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


@CONV
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col(cpu_ops, rng, dtype, x_shape, kernel, stride, pad):
    x = _conv_input(x_shape, dtype, rng)
    got, _ = compare(cpu_ops, "gpunet_im2col", "im2col", x, *kernel, stride, pad)
    offline.assert_matches(got, naive_im2col(x, *kernel, stride, pad), TOL[np.dtype(dtype)],
                           what="im2col vs loops")


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_of_a_non_contiguous_input(cpu_ops, rng, dtype):
    x = np.moveaxis(rng.standard_normal((2, 7, 6, 3)).astype(dtype), 3, 1)  # NHWC memory
    assert not x.flags.c_contiguous
    compare(cpu_ops, "gpunet_im2col", "im2col", x, 3, 2, (2, 1), (1, 0))


@CONV
@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im(cpu_ops, rng, dtype, x_shape, kernel, stride, pad):
    n, c, h, w = x_shape
    rows = c * kernel[0] * kernel[1]
    cols_n = n * conv_output_size(h, kernel[0], stride[0], pad[0]) \
        * conv_output_size(w, kernel[1], stride[1], pad[1])
    cols = _conv_input((rows, cols_n), dtype, rng)
    compare(cpu_ops, "gpunet_col2im", "col2im", cols, x_shape, *kernel, stride, pad)


@CONV
def test_col2im_is_the_adjoint_of_im2col(cpu_ops, rng, x_shape, kernel, stride, pad):
    x = rng.standard_normal(x_shape)
    cols = cpu_ops.im2col(x, *kernel, stride, pad)
    c = rng.standard_normal(cols.shape)
    back = cpu_ops.col2im(c, x_shape, *kernel, stride, pad)
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


def test_mutated_im2col_kernel_is_caught(library, cpu_ops, rng, monkeypatch):
    monkeypatch.setattr(conv.IM2COL, "_kernel", library.kernel(IM2COL_SWAPPED_WINDOW))
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    with pytest.raises(AssertionError, match="elements differ"):
        offline.assert_matches(cpu_ops.im2col(x, 3, 2, (2, 3), (1, 2)),
                               GENERIC.im2col(x, 3, 2, (2, 3), (1, 2)), TOL[x.dtype])


def test_im2col_without_output_is_a_clear_error(cpu_ops):
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="kernel <= input"):
        cpu_ops.im2col(x, 5, 5, (1, 1), (1, 1))


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
