"""Convolution and pooling against the loop references in naive.py: a fixed grid
(non-square kernels, stride 1-3, pad 0-2, odd sizes, batch 1), hypothesis over random
valid geometries, tie routing, and the geometry errors."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from gpunet import layers as L
from tolerances import assert_close

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _size(out, k, s, p):
    """An input length that tiles exactly: (size + 2p - k) = (out - 1) * s."""
    return (out - 1) * s + k - 2 * p


def _check_conv(put, host, n, c, f, kh, kw, sh, sw, ph, pw, oh, ow, seed=0):
    h, w = _size(oh, kh, sh, ph), _size(ow, kw, sw, pw)
    rng = np.random.default_rng(seed)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw)), rng.standard_normal(f)
    param = {"stride": (sh, sw), "pad": (ph, pw)}
    out, cache = L.conv_forward(put(x), put(wt), put(b), param)
    assert_close(out, naive.conv_forward(x, wt, b, (sh, sw), (ph, pw)))
    dout = rng.standard_normal(host(out).shape)
    dx, dw, db = L.conv_backward(put(dout), cache)
    for got, want in zip((dx, dw, db), naive.conv_backward(dout, x, wt, (sh, sw), (ph, pw))):
        assert_close(got, want)


GRID = [
    # n, c, f, kh, kw, sh, sw, ph, pw, oh, ow
    (1, 1, 1, 1, 1, 1, 1, 0, 0, 3, 3),
    (1, 3, 2, 3, 3, 1, 1, 1, 1, 5, 5),
    (2, 2, 3, 3, 2, 2, 1, 1, 0, 3, 4),
    (1, 2, 2, 2, 3, 3, 2, 2, 1, 3, 2),
    (3, 1, 4, 5, 1, 2, 3, 2, 0, 3, 3),
    (2, 3, 2, 4, 4, 3, 3, 0, 2, 2, 3),
    (1, 2, 3, 7, 5, 1, 2, 3, 2, 5, 3),
]


@pytest.mark.parametrize("geom", GRID)
def test_conv_matches_loops(geom, put, host):
    _check_conv(put, host, *geom)


@FAST
@given(n=st.integers(1, 3), c=st.integers(1, 3), f=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       oh=st.integers(1, 4), ow=st.integers(1, 4))
def test_conv_matches_loops_for_any_valid_geometry(put, host, n, c, f, kh, kw, sh, sw, ph, pw, oh, ow):
    if _size(oh, kh, sh, ph) < 1 or _size(ow, kw, sw, pw) < 1:
        return  # padding larger than the image: no valid input of that size
    _check_conv(put, host, n, c, f, kh, kw, sh, sw, ph, pw, oh, ow)


def _check_pool(put, host, kind, n, c, kh, kw, sh, sw, oh, ow, seed=0, ties=False):
    h, w = _size(oh, kh, sh, 0), _size(ow, kw, sw, 0)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, c, h, w)).astype(float) if ties else rng.standard_normal((n, c, h, w))
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
@pytest.mark.parametrize("geom", list(itertools.product([1, 2, 3], [2, 3], [1, 2, 3], [3, 1])))
def test_pool_matches_loops(kind, geom, put, host):
    k, kw, s, oh = geom
    _check_pool(put, host, kind, 2, 2, k, kw, s, 3 - s % 2, oh, 3)


@FAST
@given(kind=st.sampled_from(["max", "avg"]), n=st.integers(1, 2), c=st.integers(1, 3), kh=st.integers(1, 4),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3), oh=st.integers(1, 4), ow=st.integers(1, 4),
       ties=st.booleans())
def test_pool_matches_loops_for_any_valid_geometry(put, host, kind, n, c, kh, kw, sh, sw, oh, ow, ties):
    _check_pool(put, host, kind, n, c, kh, kw, sh, sw, oh, ow, ties=ties)


def test_max_pool_ties_go_to_the_first_maximum(put, host):
    x = np.array([[[[1.0, 5.0, 5.0, 0.0], [5.0, 2.0, 0.0, 0.0]]]])  # window 1: three 5s; window 2: all 0 except 5
    out, cache = L.max_pool_forward(put(x), {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = host(L.max_pool_backward(put(np.array([[[[10.0, 20.0]]]])), cache))
    np.testing.assert_array_equal(host(out), [[[[5.0, 5.0]]]])
    np.testing.assert_array_equal(dx, [[[[0, 10, 20, 0], [0, 0, 0, 0]]]])


def test_overlapping_max_pool_sums_gradients_of_shared_maxima(put, host):
    x = np.array([[[[0.0, 9.0, 0.0]]]])  # both windows of width 2 / stride 1 pick the 9
    out, cache = L.max_pool_forward(put(x), {"pool_height": 1, "pool_width": 2, "stride": 1})
    dx = host(L.max_pool_backward(put(np.array([[[[1.0, 2.0]]]])), cache))
    np.testing.assert_array_equal(dx, [[[[0.0, 3.0, 0.0]]]])


@pytest.mark.parametrize("x_shape,w_shape,param,fragment", [
    ((2, 3, 7, 6), (4, 3, 3, 3), {"stride": 2, "pad": 0}, "width does not tile: (size 6 + 2*pad 0 - kernel 3) = 3"),
    ((2, 3, 6, 5), (4, 3, 3, 3), {"stride": 2, "pad": 1}, "height does not tile: (size 6 + 2*pad 1 - kernel 3) = 5"),
    ((2, 3, 5, 5), (4, 2, 3, 3), {"stride": 1, "pad": 1}, "C = 3 channels"),
    ((2, 3, 2, 2), (4, 3, 5, 5), {"stride": 1, "pad": 0}, "must be >= 0"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 0, "pad": 1}, "stride must be >= 1"),
    ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 1, "padding": 1}, "unknown conv_param key"),
    ((2, 3, 5), (4, 3, 3, 3), {"stride": 1, "pad": 1}, "x must have 4 dimensions"),
])
def test_conv_rejects_bad_geometry_with_the_numbers(x_shape, w_shape, param, fragment, put):
    x, w, b = put(np.zeros(x_shape)), put(np.zeros(w_shape)), put(np.zeros(w_shape[0]))
    with pytest.raises(ValueError) as err:
        L.conv_forward(x, w, b, param)
    assert fragment in str(err.value)


@pytest.mark.parametrize("shape,param,fragment", [
    ((1, 1, 5, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}, "height does not tile: (size 5 - window 2) = 3"),
    ((1, 1, 4, 4), {"pool_height": 5, "pool_width": 2, "stride": 1}, "must be >= 0"),
    ((1, 1, 4, 4), {"pool_width": 2, "stride": 2}, "missing required key(s) ['pool_height']"),
    ((1, 4, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}, "x must have 4 dimensions"),
    ((1, 1, 4, 4), {"pool_height": 0, "pool_width": 2, "stride": 2}, "must be an int >= 1"),
])
@pytest.mark.parametrize("forward", [L.max_pool_forward, L.avg_pool_forward])
def test_pool_rejects_bad_geometry(shape, param, fragment, forward, put):
    with pytest.raises(ValueError) as err:
        forward(put(np.zeros(shape)), param)
    assert fragment in str(err.value)


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
