"""gpunet.reference, the readable loops behind the ``*_naive`` names: against PyTorch's
conv2d / max_pool2d / avg_pool2d with autograd (skipped without torch) for any geometry
(non-tiling, stride > 1, padding, dilation, non-square), against the independent loops
of tests/naive.py, on every backend; and the errors bad arguments get."""

import naive
import numpy as np
import pytest

from gpunet import layers as L
from gpunet import reference as R

GEOMETRIES = [
    # (N, C, H, W), (F, kh, kw), stride, pad, dilation
    ((2, 3, 7, 6), (4, 3, 2), (1, 1), (0, 0), (1, 1)),
    ((1, 2, 9, 8), (3, 3, 3), (2, 2), (0, 0), (1, 1)),  # (9 - 3) / 2 tiles, (8 - 3) / 2 does not
    ((2, 1, 10, 11), (2, 4, 2), (3, 2), (1, 2), (1, 1)),  # neither tiles; padding
    ((1, 2, 11, 9), (2, 3, 2), (2, 1), (1, 0), (2, 3)),  # dilation
    ((3, 2, 5, 5), (1, 5, 5), (1, 1), (0, 0), (1, 1)),  # the window is the whole image
]


def _conv_case(shape, filters, seed=0):
    rng = np.random.default_rng(seed)
    f, kh, kw = filters
    return rng.standard_normal(shape), rng.standard_normal((f, shape[1], kh, kw)), rng.standard_normal(f)


@pytest.mark.parametrize("shape,filters,stride,pad,dilation", GEOMETRIES)
def test_conv_matches_pytorch_autograd(shape, filters, stride, pad, dilation, put, host):
    torch = pytest.importorskip("torch")
    x, w, b = _conv_case(shape, filters)
    out, cache = R.conv_forward_naive(put(x), put(w), put(b), {"stride": stride, "pad": pad, "dilation": dilation})
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad, dilation=dilation)
    np.testing.assert_allclose(host(out), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(tout.shape)
    tout.backward(torch.tensor(dout))
    for got, want in zip(R.conv_backward_naive(put(dout), cache), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(host(got), want.numpy(), rtol=1e-12, atol=1e-12)


POOLS = [
    # (N, C, H, W), (kh, kw), stride
    ((2, 3, 6, 8), (2, 2), (2, 2)),
    ((1, 2, 7, 9), (2, 3), (2, 2)),  # non-tiling: the last row and columns are never read
    ((2, 1, 8, 7), (3, 3), (1, 2)),  # overlapping windows
    ((1, 1, 5, 5), (5, 5), (1, 1)),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,window,stride", POOLS)
def test_pool_matches_pytorch_autograd(kind, shape, window, stride, put, host):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).permutation(np.prod(shape)).reshape(shape) * 0.1  # no ties
    forward, backward = getattr(R, f"{kind}_pool_forward_naive"), getattr(R, f"{kind}_pool_backward_naive")
    out, cache = forward(put(x), {"pool_height": window[0], "pool_width": window[1], "stride": stride})
    tx = torch.tensor(x, requires_grad=True)
    tout = getattr(torch.nn.functional, f"{kind}_pool2d")(tx, window, stride)
    np.testing.assert_allclose(host(out), tout.detach().numpy(), rtol=1e-12)
    dout = np.random.default_rng(3).standard_normal(tout.shape)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(host(backward(put(dout), cache)), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_uncovered_rows_and_columns_get_zero_gradient(put, host):
    x, w, b = _conv_case((1, 1, 8, 8), (1, 3, 3))
    out, cache = R.conv_forward_naive(put(x), put(w), put(b), {"stride": 3})  # windows start at 0 and 3
    assert host(out).shape == (1, 1, 2, 2)
    dx, _, _ = R.conv_backward_naive(put(np.ones((1, 1, 2, 2))), cache)
    assert np.all(host(dx)[..., 6:, :] == 0) and np.all(host(dx)[..., :, 6:] == 0)
    assert np.all(host(dx)[..., :6, :6] != 0)


@pytest.mark.parametrize("shape,filters,stride,pad", [g[:4] for g in GEOMETRIES if g[4] == (1, 1)])
def test_conv_matches_the_test_suites_own_loops(shape, filters, stride, pad, put, host):
    x, w, b = _conv_case(shape, filters, seed=4)
    out, cache = R.conv_forward_naive(put(x), put(w), put(b), {"stride": stride, "pad": pad})
    np.testing.assert_allclose(host(out), naive.conv_forward(x, w, b, stride, pad), rtol=1e-13, atol=1e-13)
    dout = np.random.default_rng(5).standard_normal(host(out).shape)
    for got, want in zip(R.conv_backward_naive(put(dout), cache), naive.conv_backward(dout, x, w, stride, pad)):
        np.testing.assert_allclose(host(got), want, rtol=1e-13, atol=1e-13)


def test_max_pool_ties_go_to_the_first_maximum(put, host):
    x = np.array([[[[1.0, 3.0, 3.0], [3.0, 2.0, 0.0]]]])  # one 2x3 window, three tied maxima
    _, cache = R.max_pool_forward_naive(put(x), {"pool_height": 2, "pool_width": 3})
    np.testing.assert_array_equal(host(R.max_pool_backward_naive(put(np.ones((1, 1, 1, 1))), cache)),
                                  [[[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]])


def test_keeps_dtype_and_backend(put, host):
    x, w, b = (put(a, "float32") for a in _conv_case((1, 2, 5, 5), (2, 3, 3)))
    out, cache = R.conv_forward_naive(x, w, b, {"pad": 1})
    assert type(out) is type(x) and host(out).dtype == np.float32
    assert all(host(g).dtype == np.float32 for g in R.conv_backward_naive(out, cache))


def test_cs231n_naive_names_are_the_reference_loops():
    """Issue 13.5: the *_naive names were aliases of the vectorised layers."""
    for name in ("conv_forward", "conv_backward", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
                 "avg_pool_backward"):
        assert getattr(L, f"{name}_naive") is getattr(R, f"{name}_naive")
        assert getattr(L, f"{name}_naive") is not getattr(L, name)


@pytest.mark.parametrize("call,fragment", [
    (lambda x, w, b: R.conv_forward_naive(x, w, b, {"stride": 0}), "stride and dilation must be >= 1"),
    (lambda x, w, b: R.conv_forward_naive(x, w, b, {"pad": -1}), "pad >= 0"),
    (lambda x, w, b: R.conv_forward_naive(x, w, b, {"dilation": 9}),
     "the window (w.shape[2] = 3) spans 19 height positions"),
    (lambda x, w, b: R.conv_forward_naive(x, w, b, {"strides": 1}), "unknown conv_param key(s) ['strides']"),
    (lambda x, w, b: R.conv_forward_naive(x, w[:, :1, ...], b, {}), "with C = 2 channels of x"),
    (lambda x, w, b: R.conv_forward_naive(x, w, b[:1], {}), "b must have shape (3,)"),
    (lambda x, w, b: R.max_pool_forward_naive(x, {"pool_height": 2}), "missing required key(s) ['pool_width']"),
    (lambda x, w, b: R.max_pool_forward_naive(x, {"pool_height": 2.5, "pool_width": 2}),
     "pool_param['pool_height'] must be an int >= 1"),
    (lambda x, w, b: R.avg_pool_forward_naive(x, {"pool_height": 9, "pool_width": 2}),
     "the window (pool_param['pool_height'] = 9) spans 9 height positions but the padded input x "
     "has only 6"),
])
def test_errors_name_the_argument(call, fragment, put):
    x, w, b = (put(a) for a in _conv_case((1, 2, 6, 6), (3, 3, 3)))
    with pytest.raises(ValueError) as err:
        call(x, w, b)
    assert fragment in str(err.value)
