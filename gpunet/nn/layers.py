"""Layer objects over the functional layers of :mod:`gpunet.layers`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import _validate
from .. import init as initializers
from .. import layers as F
from ..backend import get_array_module
from ..backend.namespace import full, zeros
from .module import Module


def _weight_and_bias(fn: str, *, w_shape: tuple, biases: int | None, fans: tuple[int, int], init, dtype, rng):
    """Normal weights of ``w_shape`` (std from ``init`` and ``fans`` = (fan_in, fan_out), see
    :func:`gpunet.init.weight_std`) and zero biases of shape (biases,) (None for ``biases=None``),
    after checking ``init``, ``dtype`` and ``rng``."""
    dtype = _validate.float_dtype("dtype", dtype, fn=fn)
    std = initializers.weight_std(init, *fans, fn=fn)
    rng = initializers.as_rng(rng, "rng", fn=fn)
    b = None if biases is None else initializers.constant((biases,), 0.0, dtype)
    return initializers.normal(w_shape, std, rng, dtype), b


def _bias(fn: str, bias) -> tuple[str, ...]:
    """``param_names`` of a layer with a weight ``W`` and, if ``bias`` (True/False), ``b``."""
    return ("W", "b") if _validate.boolean("bias", bias, fn=fn) else ("W",)


def _or_zeros(b, w, n: int):
    """``b``, or zeros of shape (n,) next to ``w`` for a layer without bias."""
    return zeros((n,), like=w) if b is None else b


def _scale_and_shift(fn: str, num_features: int, eps: float, dtype):
    """gamma (ones) and beta (zeros) of shape (num_features,) and ``eps``, after checking them."""
    n = _validate.integer("num_features", num_features, low=1, fn=fn)
    dtype = _validate.float_dtype("dtype", dtype, fn=fn)
    eps = _validate.real("eps", eps, low=0.0, low_open=True, fn=fn)
    return initializers.constant((n,), 1.0, dtype), initializers.constant((n,), 0.0, dtype), eps


class Linear(Module):
    """y = x.reshape(N, D) @ W + b with W (in_features, out_features), b (out_features,).

    ``init``: "he" (default, for ReLU), "xavier", or a standard deviation (CS231n's
    weight_scale); biases start at 0. ``rng``: int seed or numpy Generator.
    ``bias=False``: no ``b`` (as PyTorch: ``self.b`` is None, ``params`` holds only W).
    """

    def __init__(self, in_features: int, out_features: int, init: str | float = "he",
                 dtype="float32", rng=None, *, bias: bool = True):
        super().__init__()
        d = _validate.integer("in_features", in_features, low=1, fn="Linear")
        m = _validate.integer("out_features", out_features, low=1, fn="Linear")
        self.in_features, self.out_features = d, m
        self.param_names = _bias("Linear", bias)
        self.W, self.b = _weight_and_bias("Linear", w_shape=(d, m), biases=m if bias else None,
                                          fans=(d, m), init=init, dtype=dtype, rng=rng)

    def forward(self, x):
        out, self._cache = F.affine_forward(x, self.W, _or_zeros(self.b, self.W, self.out_features))
        return out

    def backward(self, dout, compute_dx: bool = True):
        dx, self.grads["W"], db = F.affine_backward(dout, self._saved(), compute_dx)
        if self.b is not None:
            self.grads["b"] = db
        return dx

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.b is not None else ", bias=False")


class Conv2d(Module):
    """2-D convolution: W (out_channels, in_channels, kh, kw), b (out_channels,);
    ``stride`` and ``pad`` (default 0; PyTorch's name ``padding`` is accepted too) an int
    or (h, w) pair (zero padding). ``bias=False``: no ``b``, as in :class:`Linear`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, pad=None,
                 init: str | float = "he", dtype="float32", rng=None, *, padding=None, bias: bool = True):
        super().__init__()
        fn = "Conv2d"
        c = _validate.integer("in_channels", in_channels, low=1, fn=fn)
        f = _validate.integer("out_channels", out_channels, low=1, fn=fn)
        kh, kw = _validate.pair(fn, "kernel_size", kernel_size, low=1)
        if pad is not None and padding is not None:
            raise _validate.ArgumentError(
                f"{fn}: got pad={pad!r} and padding={padding!r}; they are the same setting "
                "(pad is CS231n's name, padding PyTorch's): give one")
        name, value = ("pad", pad) if padding is None else ("padding", padding)
        self.conv_param = {"stride": _validate.pair(fn, "stride", stride, low=1),
                           "pad": _validate.pair(fn, name, 0 if value is None else value, low=0)}
        self.param_names = _bias(fn, bias)
        self.W, self.b = _weight_and_bias(fn, w_shape=(f, c, kh, kw), biases=f if bias else None,
                                          fans=(c * kh * kw, f * kh * kw), init=init, dtype=dtype, rng=rng)

    def forward(self, x):
        b = _or_zeros(self.b, self.W, self.W.shape[0])
        out, self._cache = F.conv_forward(x, self.W, b, self.conv_param)
        return out

    def backward(self, dout, compute_dx: bool = True):
        dx, self.grads["W"], db = F.conv_backward(dout, self._saved(), compute_dx)
        if self.b is not None:
            self.grads["b"] = db
        return dx

    def extra_repr(self):
        f, c, kh, kw = self.W.shape
        return (f"{c}, {f}, kernel_size=({kh}, {kw}), stride={self.conv_param['stride']}, "
                f"pad={self.conv_param['pad']}" + ("" if self.b is not None else ", bias=False"))


class _Pool(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        fn = type(self).__name__
        kh, kw = _validate.pair(fn, "kernel_size", kernel_size, low=1)
        stride = (kh, kw) if stride is None else _validate.pair(fn, "stride", stride, low=1)
        self.pool_param = {"pool_height": kh, "pool_width": kw, "stride": stride}

    def extra_repr(self):
        p = self.pool_param
        return f"kernel_size=({p['pool_height']}, {p['pool_width']}), stride={p['stride']}"


class MaxPool2d(_Pool):
    """Max pooling over kernel_size windows (int or (h, w)); stride defaults to the window."""

    def forward(self, x):
        out, self._cache = F.max_pool_forward(x, self.pool_param)
        return out

    def backward(self, dout, compute_dx: bool = True):
        return F.max_pool_backward(dout, self._saved())


class AvgPool2d(_Pool):
    """Average pooling over kernel_size windows; stride defaults to the window."""

    def forward(self, x):
        out, self._cache = F.avg_pool_forward(x, self.pool_param)
        return out

    def backward(self, dout, compute_dx: bool = True):
        return F.avg_pool_backward(dout, self._saved())


class _Elementwise(Module):
    _forward: Callable[[Any], tuple[Any, Any]]  # the layer functions, set by each subclass
    _backward: Callable[[Any, Any], Any]

    def forward(self, x):
        out, self._cache = type(self)._forward(x)
        return out

    def backward(self, dout, compute_dx: bool = True):
        return type(self)._backward(dout, self._saved())


class ReLU(_Elementwise):
    """max(x, 0)."""
    _forward, _backward = staticmethod(F.relu_forward), staticmethod(F.relu_backward)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), overflow-free."""
    _forward, _backward = staticmethod(F.sigmoid_forward), staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    """tanh(x)."""
    _forward, _backward = staticmethod(F.tanh_forward), staticmethod(F.tanh_backward)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _validate.real("negative_slope", negative_slope, low=0.0, fn="LeakyReLU")

    def forward(self, x):
        out, self._cache = F.leaky_relu_forward(x, self.negative_slope)
        return out

    def backward(self, dout, compute_dx: bool = True):
        return F.leaky_relu_backward(dout, self._saved())

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class BatchNorm(Module):
    """Batch normalization of (N, D) (1d) or per channel of (N, C, H, W) (2d) inputs.

    gamma (1) and beta (0) of shape (num_features,); running_mean (0) / running_var (1)
    updated with ``momentum`` in training mode and used in eval mode (CS231n rule).
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features: int, momentum: float = 0.9, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.gamma, self.beta, self.eps = _scale_and_shift("BatchNorm", num_features, eps, dtype)
        self.momentum = _validate.real("momentum", momentum, low=0.0, high=1.0, fn="BatchNorm")
        self.running_mean = zeros(self.gamma.shape, like=self.gamma)
        self.running_var = full(self.gamma.shape, 1.0, like=self.gamma)

    def forward(self, x):
        bn_param = {"mode": "train" if self.training else "test", "momentum": self.momentum, "eps": self.eps,
                    "running_mean": self.running_mean, "running_var": self.running_var}
        if x.ndim == 4:
            out, cache = F.spatial_batchnorm_forward(x, self.gamma, self.beta, bn_param)
        elif x.ndim == 2:
            out, cache = F.batchnorm_forward(x, self.gamma, self.beta, bn_param)
        else:
            raise ValueError(f"BatchNorm: expected (N, D) or (N, C, H, W) input, got shape {tuple(x.shape)}")
        self.running_mean, self.running_var = bn_param["running_mean"], bn_param["running_var"]
        self._cache = (x.ndim, cache)
        return out

    def backward(self, dout, compute_dx: bool = True):
        ndim, cache = self._saved()
        backward = F.spatial_batchnorm_backward if ndim == 4 else F.batchnorm_backward_alt
        dx, self.grads["gamma"], self.grads["beta"] = backward(dout, cache)
        return dx

    def extra_repr(self):
        return f"{self.gamma.shape[0]}, momentum={self.momentum}, eps={self.eps}"


BatchNorm1d = BatchNorm2d = BatchNorm


class LayerNorm(Module):
    """Layer normalization of each row of (N, D); gamma (1) and beta (0) of shape (D,)."""

    param_names = ("gamma", "beta")

    def __init__(self, num_features: int, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.gamma, self.beta, self.eps = _scale_and_shift("LayerNorm", num_features, eps, dtype)

    def forward(self, x):
        out, self._cache = F.layernorm_forward(x, self.gamma, self.beta, {"eps": self.eps})
        return out

    def backward(self, dout, compute_dx: bool = True):
        dx, self.grads["gamma"], self.grads["beta"] = F.layernorm_backward(dout, self._saved())
        return dx


class Dropout(Module):
    """Inverted dropout keeping each unit with probability ``keep_prob`` (CS231n's p).

    Masks are drawn from ``self.rng`` (a numpy Generator; a model shares one stream
    among its Dropout layers so a checkpoint can restore it). Identity in eval mode.
    """

    def __init__(self, keep_prob: float = 0.5, rng=None, **kwargs):
        super().__init__()
        if "p" in kwargs:
            p = _validate.probability("p", kwargs["p"], zero=True, one=False, fn="Dropout")
            raise TypeError(
                "Dropout takes keep_prob, the probability of keeping a unit (CS231n's convention); "
                f"PyTorch's Dropout(p={p:g}) is Dropout(keep_prob={1 - p:g}) here"
            )
        if kwargs:
            raise TypeError(f"Dropout got unexpected arguments {sorted(kwargs)}")
        self.keep_prob = _validate.probability("keep_prob", keep_prob, fn="Dropout")
        self.rng = initializers.as_rng(rng, "rng", fn="Dropout")

    def forward(self, x):
        param = {"p": self.keep_prob, "mode": "train" if self.training else "test", "rng": self.rng}
        out, self._cache = F.dropout_forward(x, param)
        return out

    def backward(self, dout, compute_dx: bool = True):
        return F.dropout_backward(dout, self._saved())

    def extra_repr(self):
        return f"keep_prob={self.keep_prob}"


class Flatten(Module):
    """(N, d_1, ..., d_k) -> (N, d_1*...*d_k)."""

    def forward(self, x):
        self._cache = tuple(x.shape)
        xp = get_array_module(x)
        return xp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))

    def backward(self, dout, compute_dx: bool = True):
        shape = self._saved()
        return get_array_module(dout).reshape(dout, shape)



__all__ = [
    "AvgPool2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "LayerNorm",
    "LeakyReLU", "Linear", "MaxPool2d", "ReLU", "Sigmoid", "Tanh",
]
