"""Forward values of the layers against float64 loops written from each layer's definition.

The gradient checks only prove that a backward pass matches its own forward pass; these
tests pin the forward passes themselves (train and test mode, every documented default)
to 1e-12, so that a changed epsilon, momentum or slope cannot pass unnoticed.
"""

import math

import numpy as np
import pytest

from gpunet import layers as L

RTOL = dict(rtol=1e-12, atol=1e-12)


def bn_loops(x, gamma, beta, eps):
    """Batch normalization of x (N, D) with the batch statistics: (out, mean, biased var)."""
    n, d = x.shape
    out, means, variances = np.empty_like(x), np.empty(d), np.empty(d)
    for j in range(d):
        mean = sum(x[i, j] for i in range(n)) / n
        var = sum((x[i, j] - mean) ** 2 for i in range(n)) / n
        for i in range(n):
            out[i, j] = gamma[j] * (x[i, j] - mean) / math.sqrt(var + eps) + beta[j]
        means[j], variances[j] = mean, var
    return out, means, variances


def bn_test_loops(x, gamma, beta, mean, var, eps):
    n, d = x.shape
    return np.array(
        [[gamma[j] * (x[i, j] - mean[j]) / math.sqrt(var[j] + eps) + beta[j] for j in range(d)] for i in range(n)]
    )


def _bn_inputs(rng, n=5, d=3):
    return (
        rng.standard_normal((n, d)) * 2 + 1,
        rng.standard_normal(d),
        rng.standard_normal(d),
        rng.standard_normal(d),
        rng.uniform(0.01, 0.1, d),
    )


@pytest.mark.parametrize("eps,momentum", [(None, None), (0.05, 0.7), (1e-3, 0.0), (0.2, 1.0)])
def test_batchnorm_train_mode_and_running_averages(eps, momentum, put, host, rng):
    x, g, b, rm, rv = _bn_inputs(rng)
    param = {"mode": "train", "running_mean": put(rm), "running_var": put(rv)}
    if eps is not None:
        param.update(eps=eps, momentum=momentum)
    out, _ = L.batchnorm_forward(put(x), put(g), put(b), param)
    eps, momentum = (1e-5, 0.9) if eps is None else (eps, momentum)  # the documented defaults
    expected, mean, var = bn_loops(x, g, b, eps)
    np.testing.assert_allclose(host(out), expected, **RTOL)
    np.testing.assert_allclose(host(param["running_mean"]), momentum * rm + (1 - momentum) * mean, **RTOL)
    np.testing.assert_allclose(host(param["running_var"]), momentum * rv + (1 - momentum) * var, **RTOL)


@pytest.mark.parametrize("eps", [None, 1e-3, 0.5])
def test_batchnorm_test_mode_uses_the_running_statistics(eps, put, host, rng):
    # small running variances (0.01 .. 0.1), so that eps is far from negligible
    x, g, b, rm, rv = _bn_inputs(rng)
    param = {"mode": "test", "running_mean": put(rm), "running_var": put(rv)}
    if eps is not None:
        param["eps"] = eps
    out, cache = L.batchnorm_forward(put(x), put(g), put(b), param)
    eps = 1e-5 if eps is None else eps
    np.testing.assert_allclose(host(out), bn_test_loops(x, g, b, rm, rv, eps), **RTOL)
    np.testing.assert_array_equal(host(param["running_mean"]), rm)  # test mode leaves them alone
    np.testing.assert_array_equal(host(param["running_var"]), rv)
    # backward in test mode: out is affine in x, dx = dout * gamma / sqrt(rv + eps)
    dout = rng.standard_normal(x.shape)
    for backward in (L.batchnorm_backward, L.batchnorm_backward_alt):
        dx, dgamma, dbeta = backward(put(dout), cache)
        np.testing.assert_allclose(host(dx), dout * g / np.sqrt(rv + eps), **RTOL)
        xhat = (x - rm) / np.sqrt(rv + eps)
        np.testing.assert_allclose(host(dgamma), (dout * xhat).sum(axis=0), **RTOL)
        np.testing.assert_allclose(host(dbeta), dout.sum(axis=0), **RTOL)


def test_batchnorm_trains_on_a_batch_of_two(put, host, rng):
    # two samples are enough for a (biased) variance
    x, g, b, _, _ = _bn_inputs(rng, n=2)
    out, _ = L.batchnorm_forward(put(x), put(g), put(b), {"mode": "train"})
    np.testing.assert_allclose(host(out), bn_loops(x, g, b, 1e-5)[0], **RTOL)


def test_batchnorm_without_running_statistics_starts_from_zero_mean_and_unit_variance(put, host, rng):
    x, g, b, _, _ = _bn_inputs(rng)
    out, _ = L.batchnorm_forward(put(x), put(g), put(b), {"mode": "test"})
    np.testing.assert_allclose(host(out), bn_test_loops(x, g, b, np.zeros(3), np.ones(3), 1e-5), **RTOL)
    param = {"mode": "train"}
    L.batchnorm_forward(put(x), put(g), put(b), param)
    _, mean, var = bn_loops(x, g, b, 1e-5)
    np.testing.assert_allclose(host(param["running_mean"]), 0.1 * mean, **RTOL)
    np.testing.assert_allclose(host(param["running_var"]), 0.9 + 0.1 * var, **RTOL)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_spatial_batchnorm_normalizes_each_channel_over_n_h_w(mode, put, host, rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 3 + 2
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.01, 0.1, 3)
    param = {"mode": mode, "running_mean": put(rm), "running_var": put(rv), "eps": 0.01, "momentum": 0.8}
    out, _ = L.spatial_batchnorm_forward(put(x), put(g), put(b), param)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 3)  # one row per (n, h, w)
    if mode == "train":
        expected, mean, var = bn_loops(rows, g, b, 0.01)
        np.testing.assert_allclose(host(param["running_mean"]), 0.8 * rm + 0.2 * mean, **RTOL)
        np.testing.assert_allclose(host(param["running_var"]), 0.8 * rv + 0.2 * var, **RTOL)
    else:
        expected = bn_test_loops(rows, g, b, rm, rv, 0.01)
    np.testing.assert_allclose(host(out), expected.reshape(2, 4, 5, 3).transpose(0, 3, 1, 2), **RTOL)


@pytest.mark.parametrize("eps", [None, 0.3])
def test_layernorm_normalizes_each_row(eps, put, host, rng):
    x = rng.standard_normal((4, 5)) * 0.2 + 1  # a small spread: eps matters
    g, b = rng.standard_normal(5), rng.standard_normal(5)
    out, _ = L.layernorm_forward(put(x), put(g), put(b), {} if eps is None else {"eps": eps})
    eps = 1e-5 if eps is None else eps
    expected = bn_loops(x.T, np.ones(4), np.zeros(4), eps)[0].T * g + b  # rows of x are the columns of x.T
    np.testing.assert_allclose(host(out), expected, **RTOL)


def test_affine_forward_is_the_sum_over_the_flattened_input(put, host, rng):
    x, w, b = rng.standard_normal((3, 2, 2)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    out, _ = L.affine_forward(put(x), put(w), put(b))
    flat = x.reshape(3, 4)
    expected = [[sum(flat[i, k] * w[k, j] for k in range(4)) + b[j] for j in range(5)] for i in range(3)]
    np.testing.assert_allclose(host(out), expected, **RTOL)


def test_elementwise_activations(put, host):
    values = [-30.0, -2.5, -1e-3, 0.0, 1e-3, 0.7, 30.0]
    x = put(np.array(values))
    np.testing.assert_allclose(host(L.relu_forward(x)[0]), [max(v, 0.0) for v in values], **RTOL)
    np.testing.assert_allclose(host(L.leaky_relu_forward(x)[0]), [v if v > 0 else 0.01 * v for v in values], **RTOL)
    np.testing.assert_allclose(host(L.leaky_relu_forward(x, 0.3)[0]), [v if v > 0 else 0.3 * v for v in values], **RTOL)
    np.testing.assert_allclose(host(L.sigmoid_forward(x)[0]), [1 / (1 + math.exp(-v)) for v in values], rtol=1e-14)
    np.testing.assert_allclose(host(L.tanh_forward(x)[0]), [math.tanh(v) for v in values], rtol=1e-14)


def test_elementwise_backward_values(put, host):
    values = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    dout = np.array([1.0, -2.0, 3.0, 0.5, -1.5])
    x, d = put(values), put(dout)
    slope = 0.2
    np.testing.assert_allclose(
        host(L.leaky_relu_backward(d, L.leaky_relu_forward(x, slope)[1])),
        np.where(values > 0, dout, slope * dout),
        **RTOL,
    )
    np.testing.assert_allclose(
        host(L.leaky_relu_backward(d, L.leaky_relu_forward(x)[1])), np.where(values > 0, dout, 0.01 * dout), **RTOL
    )
    s = 1 / (1 + np.exp(-values))
    np.testing.assert_allclose(host(L.sigmoid_backward(d, L.sigmoid_forward(x)[1])), dout * s * (1 - s), **RTOL)
    t = np.tanh(values)
    np.testing.assert_allclose(host(L.tanh_backward(d, L.tanh_forward(x)[1])), dout * (1 - t * t), **RTOL)


@pytest.mark.parametrize("p", [0.3, 0.75])
def test_dropout_follows_its_documented_mask(p, put, host):
    # the mask's contract: uniform numbers U from numpy.random.default_rng(seed).random(shape)
    # (float64, whatever the dtype); keep where U < p, scale the kept units by 1/p
    x = np.random.default_rng(0).standard_normal((6, 7))
    out, cache = L.dropout_forward(put(x), {"p": p, "mode": "train", "seed": 42})
    keep = np.random.default_rng(42).random((6, 7)) < p
    np.testing.assert_allclose(host(out), np.where(keep, x / p, 0.0), **RTOL)
    dout = np.random.default_rng(1).standard_normal((6, 7))
    np.testing.assert_allclose(host(L.dropout_backward(put(dout), cache)), np.where(keep, dout / p, 0.0), **RTOL)
    # p = 1 keeps everything, in train mode too
    np.testing.assert_array_equal(host(L.dropout_forward(put(x), {"p": 1.0, "mode": "train", "seed": 3})[0]), x)
