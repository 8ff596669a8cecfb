"""Batch normalization (vanilla and spatial), layer normalization and spatial group
normalization, CS231n conventions.

Train mode normalises with the batch statistics (biased variance) and updates
``bn_param['running_mean'/'running_var']`` (``momentum`` 0.9 by default); test mode
uses the running statistics. The running variance starts at 1 (PyTorch), not at 0 as in
CS231n, so a model evaluated before training does not divide by sqrt(eps)
(``gpunet.compat.cs231n`` passes CS231n's zeros). ``eps`` must be > 0 and ``momentum``
in [0, 1].
"""

from __future__ import annotations

from .. import _validate
from ..backend.namespace import full, zeros

__all__ = [
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
]

_BN_KEYS = {"mode", "eps", "momentum", "running_mean", "running_var"}
_LN_KEYS = {"eps", "mode"}  # 'mode' is accepted and ignored: CS231n models set it on every norm param


def _eps(fn: str, param_name: str, param) -> float:
    return _validate.real(f"{param_name}['eps']", param.get("eps", 1e-5), low=0.0, low_open=True, fn=fn)


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of x (N, D) with scale gamma (D,) and shift beta (D,).

    bn_param: 'mode' ('train'|'test', required), 'eps' (1e-5), 'momentum' (0.9),
    'running_mean'/'running_var' (D,) (created when absent and stored back).
    Returns out (N, D) and a cache for the backward pass.
    """
    fn = "batchnorm_forward"
    _validate.keys(fn, "bn_param", bn_param, _BN_KEYS, {"mode"})
    mode = _validate.mode(fn, "bn_param", bn_param)
    rm, rv = bn_param.get("running_mean"), bn_param.get("running_var")
    stats = {name: a for name, a in (("running_mean", rm), ("running_var", rv)) if a is not None}  # None: not yet
    xp = _validate.float_inputs(fn, x=x, gamma=gamma, beta=beta, **stats)
    _validate.ndim(fn, "x", x, 2, "(N, D); use spatial_batchnorm_forward for (N, C, H, W)")
    n, d = x.shape
    for name, a in (("gamma", gamma), ("beta", beta), ("bn_param['running_mean']", rm),
                    ("bn_param['running_var']", rv)):
        if a is not None:
            _validate.shape(fn, name, a, (d,), "D = x.shape[1]")
    eps = _eps(fn, "bn_param", bn_param)
    momentum = _validate.real("bn_param['momentum']", bn_param.get("momentum", 0.9), low=0.0, high=1.0, fn=fn)
    rm = zeros((d,), like=x) if rm is None else rm
    rv = full((d,), 1.0, like=x) if rv is None else rv

    if mode == "train":
        if n < 2:
            raise ValueError(
                f"{fn}: training mode needs at least 2 samples per feature to estimate a "
                f"variance, got x of shape {tuple(x.shape)}; use a larger batch or mode 'test'"
            )
        mu = xp.mean(x, axis=0)
        xc = x - mu
        var = xp.mean(xc * xc, axis=0)
        inv_std = 1.0 / xp.sqrt(var + eps)
        xhat = xc * inv_std
        rm = momentum * rm + (1 - momentum) * mu
        rv = momentum * rv + (1 - momentum) * var
        cache = ("train", xhat, xc, inv_std, gamma)
    else:
        inv_std = 1.0 / xp.sqrt(rv + eps)
        xhat = (x - rm) * inv_std
        cache = ("test", xhat, None, inv_std, gamma)
    bn_param["running_mean"], bn_param["running_var"] = rm, rv
    return gamma * xhat + beta, cache


def _bn_backward_common(fn: str, dout, cache):
    """Checks and the parts both batchnorm backward passes share: (xp, dxhat, dgamma,
    dbeta, and dx itself in test mode, else None)."""
    mode, xhat, _, inv_std, gamma = cache
    xp = _validate.float_inputs(fn, dout=dout, xhat=xhat)
    _validate.shape(fn, "dout", dout, xhat.shape, "(N, D) of the forward pass")
    dxhat = dout * gamma
    dgamma, dbeta = xp.sum(dout * xhat, axis=0), xp.sum(dout, axis=0)
    return xp, dxhat, dgamma, dbeta, (dxhat * inv_std if mode == "test" else None)


def batchnorm_backward(dout, cache):
    """Gradients (dx, dgamma, dbeta) of batch normalization, step by step through the
    graph xc = x - mean(x), var = mean(xc**2), xhat = xc / sqrt(var + eps)."""
    xp, dxhat, dgamma, dbeta, dx_test = _bn_backward_common("batchnorm_backward", dout, cache)
    if dx_test is not None:
        return dx_test, dgamma, dbeta
    _, _, xc, inv_std, _ = cache
    n = dout.shape[0]
    dinv_std = xp.sum(dxhat * xc, axis=0)
    dvar = -0.5 * dinv_std * inv_std**3
    dxc = dxhat * inv_std + dvar * (2.0 / n) * xc
    dmu = -xp.sum(dxc, axis=0)
    return dxc + dmu / n, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Same gradients as :func:`batchnorm_backward` from the simplified closed form
    dx = inv_std / N * (N*dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))."""
    xp, dxhat, dgamma, dbeta, dx_test = _bn_backward_common("batchnorm_backward_alt", dout, cache)
    if dx_test is not None:
        return dx_test, dgamma, dbeta
    _, xhat, _, inv_std, _ = cache
    return _normalized_dx(xp, dxhat, xhat, inv_std, axis=0), dgamma, dbeta


def _normalized_dx(xp, dxhat, xhat, inv_std, axis: int):
    """dx of xhat = (x - mean) * inv_std, statistics over ``axis``."""
    n = dxhat.shape[axis]
    s1 = xp.sum(dxhat, axis=axis, keepdims=True)
    s2 = xp.sum(dxhat * xhat, axis=axis, keepdims=True)
    return (inv_std / n) * (n * dxhat - s1 - xhat * s2)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization per channel of x (N, C, H, W); gamma, beta (C,).
    Statistics over N, H and W. Returns out (N, C, H, W) and cache."""
    xp = _validate.float_inputs("spatial_batchnorm_forward", x=x)
    _validate.ndim("spatial_batchnorm_forward", "x", x, 4, "(N, C, H, W)")
    n, c, h, w = x.shape
    rows = xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)), (n * h * w, c))
    out, cache = batchnorm_forward(rows, gamma, beta, bn_param)
    return xp.permute_dims(xp.reshape(out, (n, h, w, c)), (0, 3, 1, 2)), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    """Gradients (dx (N, C, H, W), dgamma (C,), dbeta (C,)) of spatial batch normalization."""
    bn_cache, (n, c, h, w) = cache
    xp = _validate.float_inputs("spatial_batchnorm_backward", dout=dout)
    _validate.shape("spatial_batchnorm_backward", "dout", dout, (n, c, h, w), "x of the forward pass")
    rows = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (n * h * w, c))
    drows, dgamma, dbeta = batchnorm_backward_alt(rows, bn_cache)
    return xp.permute_dims(xp.reshape(drows, (n, h, w, c)), (0, 3, 1, 2)), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization of each row of x (N, D); gamma, beta (D,); ln_param: 'eps' (1e-5).
    Same in train and test mode. Returns out (N, D) and cache."""
    fn = "layernorm_forward"
    _validate.keys(fn, "ln_param", ln_param, _LN_KEYS)
    xp = _validate.float_inputs(fn, x=x, gamma=gamma, beta=beta)
    _validate.ndim(fn, "x", x, 2, "(N, D)")
    d = x.shape[1]
    _validate.shape(fn, "gamma", gamma, (d,), "D = x.shape[1]")
    _validate.shape(fn, "beta", beta, (d,), "D = x.shape[1]")
    eps = _eps(fn, "ln_param", ln_param)
    xc = x - xp.mean(x, axis=1, keepdims=True)
    inv_std = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=1, keepdims=True) + eps)
    xhat = xc * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Gradients (dx (N, D), dgamma (D,), dbeta (D,)) of layer normalization."""
    xhat, inv_std, gamma = cache
    xp = _validate.float_inputs("layernorm_backward", dout=dout, xhat=xhat)
    _validate.shape("layernorm_backward", "dout", dout, xhat.shape, "(N, D) of the forward pass")
    dxhat = dout * gamma
    dx = _normalized_dx(xp, dxhat, xhat, inv_std, axis=1)
    return dx, xp.sum(dout * xhat, axis=0), xp.sum(dout, axis=0)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalization of x (N, C, H, W): the channels form G groups of C/G, and each
    (sample, group) is normalised over its channels and pixels; gamma, beta (1, C, 1, 1)
    scale and shift each channel. gn_param: 'eps' (1e-5). Returns out (N, C, H, W), cache."""
    fn = "spatial_groupnorm_forward"
    _validate.keys(fn, "gn_param", gn_param, _LN_KEYS)
    xp = _validate.float_inputs(fn, x=x, gamma=gamma, beta=beta)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    n, c, h, w = x.shape
    groups = _validate.integer("G", G, low=1, fn=fn)
    if c % groups:
        raise _validate.ArgumentError(f"{fn}: G = {groups} groups must divide the C = {c} channels of x")
    _validate.shape(fn, "gamma", gamma, (1, c, 1, 1), "(1, C, 1, 1) with C = x.shape[1]")
    _validate.shape(fn, "beta", beta, (1, c, 1, 1), "(1, C, 1, 1) with C = x.shape[1]")
    eps = _eps(fn, "gn_param", gn_param)
    xg = xp.reshape(x, (n, groups, c // groups * h * w))
    xc = xg - xp.mean(xg, axis=2, keepdims=True)
    inv_std = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=2, keepdims=True) + eps)
    xhat = xp.reshape(xc * inv_std, x.shape)
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def spatial_groupnorm_backward(dout, cache):
    """Gradients (dx (N, C, H, W), dgamma (1, C, 1, 1), dbeta (1, C, 1, 1)) of spatial
    group normalization."""
    xhat, inv_std, gamma = cache
    fn = "spatial_groupnorm_backward"
    xp = _validate.float_inputs(fn, dout=dout, xhat=xhat)
    _validate.shape(fn, "dout", dout, xhat.shape, "x of the forward pass")
    n, c, h, w = xhat.shape
    groups = inv_std.shape[1]
    grouped = (n, groups, c // groups * h * w)
    dxhat = xp.reshape(dout * gamma, grouped)
    dx = _normalized_dx(xp, dxhat, xp.reshape(xhat, grouped), inv_std, axis=2)
    dgamma = xp.sum(dout * xhat, axis=(0, 2, 3), keepdims=True)
    return xp.reshape(dx, xhat.shape), dgamma, xp.sum(dout, axis=(0, 2, 3), keepdims=True)
