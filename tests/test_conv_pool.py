"""Convolution and pooling against the loop references in naive.py and, when it is
installed, PyTorch's autograd (``torch.nn.functional.conv2d``, ``max_pool2d``,
``avg_pool2d``): a fixed grid (non-square kernels, stride 1-3, pad 0-3, dilation 1-3,
odd sizes, inputs whose last rows and columns no window reaches, batch 1), hypothesis
over any geometry, max-pool ties and NaN, and the geometry errors."""

import itertools

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from gpunet import layers as L

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _conv_case(n, c, f, h, w, kh, kw, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw)), rng.standard_normal(f), rng


def _check_conv(put, host, n, c, f, h, w, kh, kw, sh, sw, ph, pw, dh=1, dw=1, seed=0):
    x, wt, b, rng = _conv_case(n, c, f, h, w, kh, kw, seed)
    param = {"stride": (sh, sw), "pad": (ph, pw), "dilation": (dh, dw)}
    out, cache = L.conv_forward(put(x), put(wt), put(b), param)
    assert_close(out, naive.conv_forward(x, wt, b, (sh, sw), (ph, pw), (dh, dw)))
    dout = rng.standard_normal(host(out).shape)
    dx, dw_, db = L.conv_backward(put(dout), cache)
    for got, want in zip((dx, dw_, db), naive.conv_backward(dout, x, wt, (sh, sw), (ph, pw), (dh, dw))):
        assert_close(got, want)


GRID = [
    # n, c, f, h, w, kh, kw, sh, sw, ph, pw, dh, dw
    (1, 1, 1, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1),
    (1, 3, 2, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1),
    (2, 2, 3, 5, 5, 3, 2, 2, 1, 1, 0, 1, 1),
    (3, 1, 4, 9, 7, 5, 1, 2, 3, 2, 0, 1, 1),
    (1, 2, 3, 9, 7, 7, 5, 1, 2, 3, 2, 1, 1),
    # floored: (size + 2*pad - kernel) not divisible by the stride
    (2, 3, 4, 7, 6, 3, 3, 2, 2, 0, 0, 1, 1),
    (1, 2, 2, 6, 5, 3, 3, 2, 2, 1, 1, 1, 1),
    (2, 2, 3, 10, 8, 4, 3, 3, 2, 1, 0, 1, 1),
    (1, 1, 2, 8, 9, 2, 5, 3, 4, 2, 1, 1, 1),
    # dilation, with and without stride, padding and flooring
    (2, 2, 3, 9, 8, 3, 3, 1, 1, 2, 2, 2, 2),
    (1, 3, 2, 10, 9, 3, 2, 1, 1, 1, 0, 3, 2),
    (2, 2, 2, 11, 10, 3, 3, 2, 3, 1, 2, 2, 1),
    (1, 1, 3, 7, 7, 2, 2, 1, 1, 3, 3, 2, 2),
]


@pytest.mark.parametrize("geom", GRID)
def test_conv_matches_loops(geom, put, host):
    _check_conv(put, host, *geom)


@st.composite
def conv_geometries(draw):
    """(n, c, f, h, w, kh, kw, sh, sw, ph, pw, dh, dw) of any convolution with an output:
    the smallest input the dilated kernel fits (at least 1), plus up to 5."""
    n, c, f = (draw(st.integers(1, 3)) for _ in range(3))
    kh, kw = (draw(st.integers(1, 4)) for _ in range(2))
    sh, sw, dh, dw = (draw(st.integers(1, 3)) for _ in range(4))
    ph, pw = (draw(st.integers(0, 2)) for _ in range(2))
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 5))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 5))
    return n, c, f, h, w, kh, kw, sh, sw, ph, pw, dh, dw


@FAST
@given(geom=conv_geometries())
def test_conv_matches_loops_for_any_geometry(put, host, geom):
    _check_conv(put, host, *geom)


def _pool_input(n, c, h, w, ties, nans, rng):
    """Normal values; small integers (many ties) with ``ties``; a quarter NaN with ``nans``."""
    x = rng.integers(0, 3, (n, c, h, w)).astype(float) if ties else rng.standard_normal((n, c, h, w))
    if nans:
        x.reshape(-1)[rng.choice(x.size, size=max(1, x.size // 4), replace=False)] = np.nan
    return x


def _check_pool(put, host, kind, n, c, h, w, kh, kw, sh, sw, seed=0, ties=False, nans=False):
    rng = np.random.default_rng(seed)
    x = _pool_input(n, c, h, w, ties, nans, rng)
    param = {"pool_height": kh, "pool_width": kw, "stride": (sh, sw)}
    forward, backward = {"max": (L.max_pool_forward, L.max_pool_backward),
                         "avg": (L.avg_pool_forward, L.avg_pool_backward)}[kind]
    ref_f, ref_b = {"max": (naive.max_pool_forward, naive.max_pool_backward),
                    "avg": (naive.avg_pool_forward, naive.avg_pool_backward)}[kind]
    out, cache = forward(put(x), param)
    assert_close(out, ref_f(x, kh, kw, sh, sw))
    dout = rng.standard_normal(host(out).shape)
    assert_close(backward(put(dout), cache), ref_b(dout, x, kh, kw, sh, sw))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("geom", list(itertools.product([1, 2, 3], [2, 3], [1, 2, 3], [3, 4, 7])))
def test_pool_matches_loops(kind, geom, put, host):
    k, kw, s, h = geom  # h = 4 or 7 with k = 2 or 3 and s = 2 or 3: floored
    _check_pool(put, host, kind, 2, 2, max(h, k), 7, k, kw, s, 3 - s % 2)


@st.composite
def pool_cases(draw):
    """(kind, n, c, h, w, kh, kw, sh, sw) of any max or average pooling, and (ties, nans)."""
    kind = draw(st.sampled_from(["max", "avg"]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = (draw(st.integers(1, 4)) for _ in range(2))
    sh, sw = (draw(st.integers(1, 3)) for _ in range(2))
    h, w = kh + draw(st.integers(0, 6)), kw + draw(st.integers(0, 6))
    return (kind, n, c, h, w, kh, kw, sh, sw), (draw(st.booleans()), draw(st.booleans()))


@FAST
@given(case=pool_cases())
def test_pool_matches_loops_for_any_geometry(put, host, case):
    geom, (ties, nans) = case
    _check_pool(put, host, *geom, ties=ties, nans=nans)


def test_max_pool_ties_go_to_the_first_maximum(put, host):
    x = np.array([[[[1.0, 5.0, 5.0, 0.0], [5.0, 2.0, 0.0, 0.0]]]])  # window 1: three 5s; window 2: all 0 except 5
    out, cache = L.max_pool_forward(put(x), {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = host(L.max_pool_backward(put(np.array([[[[10.0, 20.0]]]])), cache))
    np.testing.assert_array_equal(host(out), [[[[5.0, 5.0]]]])
    np.testing.assert_array_equal(dx, [[[[0, 10, 20, 0], [0, 0, 0, 0]]]])


def test_max_pool_over_nan_pools_to_nan_and_routes_to_the_last_nan(put, host):
    """PyTorch's rule (measured with torch 2.x, CPU): a window holding NaN gives NaN and
    sends its gradient to its last NaN in row-major order."""
    nan = np.nan
    x = np.array([[[[1.0, nan, 3.0, nan], [5.0, 0.0, nan, 2.0]]]])
    out, cache = L.max_pool_forward(put(x), {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = host(L.max_pool_backward(put(np.array([[[[10.0, 20.0]]]])), cache))
    assert np.isnan(host(out)).all()
    np.testing.assert_array_equal(dx, [[[[0, 10, 0, 0], [0, 0, 20, 0]]]])


def test_overlapping_max_pool_sums_gradients_of_shared_maxima(put, host):
    x = np.array([[[[0.0, 9.0, 0.0]]]])  # both windows of width 2 / stride 1 pick the 9
    out, cache = L.max_pool_forward(put(x), {"pool_height": 1, "pool_width": 2, "stride": 1})
    dx = host(L.max_pool_backward(put(np.array([[[[1.0, 2.0]]]])), cache))
    np.testing.assert_array_equal(dx, [[[[0.0, 3.0, 0.0]]]])


def test_floored_geometry_leaves_zero_gradient_where_no_window_reaches(put, host):
    x = np.arange(35.0).reshape(1, 1, 5, 7)
    out, cache = L.max_pool_forward(put(x), {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert host(out).shape == (1, 1, 2, 3)
    dx = host(L.max_pool_backward(put(np.ones((1, 1, 2, 3))), cache))
    assert dx[0, 0, 4, :].sum() == 0 and dx[0, 0, :, 6].sum() == 0 and dx.sum() == 6
    x, w = np.ones((1, 1, 6, 8)), np.ones((1, 1, 3, 3))
    out, cache = L.conv_forward(put(x), put(w), put(np.zeros(1)), {"stride": 2, "pad": 0})
    assert host(out).shape == (1, 1, 2, 3)  # windows over rows 0-4 and columns 0-6
    dx = host(L.conv_backward(put(np.ones((1, 1, 2, 3))), cache)[0])
    assert dx[0, 0, 5, :].sum() == 0 and dx[0, 0, :, 7].sum() == 0 and dx.sum() == 6 * 9


@pytest.mark.parametrize("x_shape,w_shape,param,fragment", [
    ((2, 3, 5, 5), (4, 2, 3, 3), {"stride": 1, "pad": 1}, "C = 3 channels"),
    ((2, 3, 2, 2), (4, 3, 5, 5), {"stride": 1, "pad": 0}, "height is too small: size 2 + 2*pad 0 = 2 < 5"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 1, "pad": 0, "dilation": (1, 3)},
     "width is too small: size 5 + 2*pad 0 = 5 < 7, the extent of kernel 3 with dilation 3"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 0, "pad": 1}, "conv_param['stride'] must be an int >= 1"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 1, "pad": -1}, "conv_param['pad'] must be an int >= 0"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"dilation": (1, 0)}, "conv_param['dilation'] must be an int >= 1"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 1, "padding": 1}, "unknown conv_param key"),
    ((2, 3, 5), (4, 3, 3, 3), {"stride": 1, "pad": 1}, "x must have 4 dimensions"),
])
def test_conv_rejects_bad_geometry_with_the_numbers(x_shape, w_shape, param, fragment, put):
    x, w, b = put(np.zeros(x_shape)), put(np.zeros(w_shape)), put(np.zeros(w_shape[0]))
    with pytest.raises(ValueError) as err:
        L.conv_forward(x, w, b, param)
    assert str(err.value).startswith("conv_forward: ") and fragment in str(err.value)


@pytest.mark.parametrize("shape,param,fragment", [
    ((1, 1, 4, 4), {"pool_height": 5, "pool_width": 2, "stride": 1}, "the height 4 of x is smaller than the window 5"),
    ((1, 1, 4, 4), {"pool_width": 2, "stride": 2}, "missing required key(s) ['pool_height']"),
    ((1, 4, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}, "x must have 4 dimensions"),
    ((1, 1, 4, 4), {"pool_height": 0, "pool_width": 2, "stride": 2}, "must be an int >= 1"),
    ((1, 1, 4, 4), {"pool_height": 2, "pool_width": 2, "stride": (2, 0)}, "pool_param['stride'] must be an int >= 1"),
])
@pytest.mark.parametrize("forward", [L.max_pool_forward, L.avg_pool_forward])
def test_pool_rejects_bad_geometry(shape, param, fragment, forward, put):
    with pytest.raises(ValueError) as err:
        forward(put(np.zeros(shape)), param)
    assert fragment in str(err.value)


@pytest.mark.parametrize("backward", ["conv", "conv_relu_pool"])
def test_an_empty_batch_goes_through_forward_and_backward(backward, put, host):
    x, w, b = put(np.zeros((0, 2, 6, 6))), put(np.ones((3, 2, 3, 3))), put(np.ones(3))
    if backward == "conv":
        out, cache = L.conv_forward(x, w, b, {"pad": 1})
        dx, dw, db = L.conv_backward(out, cache)
    else:
        out, cache = L.conv_relu_pool_forward(x, w, b, {"pad": 1}, {"pool_height": 2, "pool_width": 2})
        dx, dw, db = L.conv_relu_pool_backward(out, cache)
    assert host(dx).shape == (0, 2, 6, 6)
    np.testing.assert_array_equal(host(dw), np.zeros((3, 2, 3, 3)))
    np.testing.assert_array_equal(host(db), np.zeros(3))


# --- PyTorch as an independent oracle (skipped without torch) --------------------------------


def _torch():
    return pytest.importorskip("torch")


@FAST
@given(geom=conv_geometries())
def test_conv_matches_torch(put, host, geom):
    torch = _torch()
    n, c, f, h, w, kh, kw, sh, sw, ph, pw, dh, dw = geom
    x, wt, b, rng = _conv_case(n, c, f, h, w, kh, kw)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    out, cache = L.conv_forward(put(x), put(wt), put(b), {"stride": (sh, sw), "pad": (ph, pw), "dilation": (dh, dw)})
    assert_close(out, tout.detach().numpy())
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    for got, want in zip(L.conv_backward(put(dout), cache), (tx.grad, tw.grad, tb.grad)):
        assert_close(got, want.numpy())


@FAST
@given(case=pool_cases())
def test_pool_matches_torch(put, host, case):
    torch = _torch()
    (kind, n, c, h, w, kh, kw, sh, sw), (ties, nans) = case
    rng = np.random.default_rng(0)
    x = _pool_input(n, c, h, w, ties, nans, rng)
    forward, backward, tpool = {"max": (L.max_pool_forward, L.max_pool_backward, torch.nn.functional.max_pool2d),
                                "avg": (L.avg_pool_forward, L.avg_pool_backward, torch.nn.functional.avg_pool2d)}[kind]
    tx = torch.tensor(x, requires_grad=True)
    tout = tpool(tx, (kh, kw), (sh, sw))
    out, cache = forward(put(x), {"pool_height": kh, "pool_width": kw, "stride": (sh, sw)})
    assert_close(out, tout.detach().numpy())
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(backward(put(dout), cache), tx.grad.numpy())


@FAST
@given(n=st.integers(1, 3), d=st.lists(st.integers(1, 4), min_size=1, max_size=3), m=st.integers(1, 5),
       wrong=st.integers(1, 3))
def test_affine_property_and_mismatch_error(put, host, n, d, m, wrong):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *d))
    w, b = rng.standard_normal((int(np.prod(d)), m)), rng.standard_normal(m)
    out, _ = L.affine_forward(put(x), put(w), put(b))
    assert_close(out, x.reshape(n, -1) @ w + b)
    bad_w = rng.standard_normal((int(np.prod(d)) + wrong, m))
    with pytest.raises(ValueError, match=r"w must have shape \(D, M\) with D = "):
        L.affine_forward(put(x), put(bad_w), put(b))
    with pytest.raises(ValueError, match=r"b must have shape"):
        L.affine_forward(put(x), put(w), put(rng.standard_normal(m + wrong)))
