"""Convolution and pooling geometry: shapes, stride, padding, dilation and output size.

A layer builds one :class:`ConvGeometry` or :class:`PoolGeometry` per call from its
parameters and hands it to every backend's Ops. Output sizes are floored, as in PyTorch
and the CS231n loops: input rows and columns that no window reaches get zero gradient.
A leaf module (it imports nothing from gpunet), so the CUDA kernels can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The most elements an array may have: 8-byte elements fill NumPy's signed 64-bit byte count.
MAX_ELEMENTS = 2**60


def check_elements(what: str, shape: tuple) -> None:
    """Refuse an array no machine could allocate (more than :data:`MAX_ELEMENTS` elements)."""
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{what} would have shape {shape}: {n:.3g} elements, more than any array "
                         "can hold; use a smaller pad (or kernel, stride, dilation)")


def conv_output_size(size: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Positions of a window of ``k`` taps ``dilation`` apart sliding with ``stride``
    over ``size + 2*pad`` elements (floored; < 1 when the window does not fit)."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _pair(name: str, value) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an (h, w) pair, got {value!r}")
    return pair  # type: ignore[return-value]


def _taps(start: int, count: int, stride: int) -> slice:
    """Elements ``start``, ``start + stride``, ... (``count`` of them) as a slice."""
    return slice(start, start + stride * (count - 1) + 1, stride)


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution of x (N, C, H, W) with filters w (F, C, kh, kw): (h, w) pairs of
    stride, zero padding and dilation; ``out_hw`` = (OH, OW) is derived.

    Ops take the number of samples from the arrays they are given (a chunk of the
    batch may be); ``x_shape[0]`` is the whole batch's.
    """

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = field(init=False)

    def __post_init__(self):
        x_shape, w_shape = tuple(map(int, self.x_shape)), tuple(map(int, self.w_shape))
        stride, pad = _pair("stride", self.stride), _pair("pad", self.pad)
        dilation = _pair("dilation", self.dilation)
        if len(x_shape) != 4 or len(w_shape) != 4:
            raise ValueError(f"need x of shape (N, C, H, W) and w of shape (F, C, HH, WW), got {x_shape} and {w_shape}")
        if w_shape[1] != x_shape[1]:
            raise ValueError(
                f"w must have shape (F, C, HH, WW) with C = {x_shape[1]} channels of x {x_shape}, "
                f"got w.shape = {w_shape}")
        if min(stride) < 1 or min(pad) < 0 or min(dilation) < 1 or min(w_shape[2:]) < 1:
            raise ValueError(f"stride and dilation must be >= 1, pad >= 0 and the kernel non-empty, got "
                             f"stride={stride}, pad={pad}, dilation={dilation}, kernel={w_shape[2:]}")
        out = []
        for axis, size, k, s, p, d in zip(("height", "width"), x_shape[2:], w_shape[2:], stride, pad, dilation):
            extent = d * (k - 1) + 1
            if size + 2 * p < extent:
                raise ValueError(
                    f"the {axis} is too small: size {size} + 2*pad {p} = {size + 2 * p} < {extent}, the extent "
                    f"of kernel {k} with dilation {d}; pad more or use a smaller kernel")
            out.append(conv_output_size(size, k, s, p, d))
        check_elements("the padded input", x_shape[:2] + (x_shape[2] + 2 * pad[0], x_shape[3] + 2 * pad[1]))
        check_elements("the output", (x_shape[0], w_shape[0], *out))
        for name, value in (("x_shape", x_shape), ("w_shape", w_shape), ("stride", stride), ("pad", pad),
                            ("dilation", dilation), ("out_hw", tuple(out))):
            object.__setattr__(self, name, value)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """(N, F, OH, OW)."""
        return (self.x_shape[0], self.w_shape[0]) + self.out_hw

    @property
    def rows(self) -> int:
        """Rows of the im2col columns: C*kh*kw."""
        _, c, kh, kw = self.w_shape
        return c * kh * kw

    def tap(self, i: int, j: int) -> tuple[slice, slice, slice, slice]:
        """Index of the *padded* input elements that kernel tap (i, j) meets, for every
        output position: an (N, C, OH, OW) strided slice."""
        (oh, ow), (sh, sw), (dh, dw) = self.out_hw, self.stride, self.dilation
        return slice(None), slice(None), _taps(i * dh, oh, sh), _taps(j * dw, ow, sw)


@dataclass(frozen=True)
class PoolGeometry:
    """Pooling of x (N, C, H, W) over (kh, kw) windows with an (h, w) stride;
    ``out_hw`` = (OH, OW) is derived. No padding."""

    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    out_hw: tuple[int, int] = field(init=False)

    def __post_init__(self):
        x_shape = tuple(map(int, self.x_shape))
        kernel, stride = _pair("kernel", self.kernel), _pair("stride", self.stride)
        if len(x_shape) != 4 or min(kernel) < 1 or min(stride) < 1:
            raise ValueError(f"need x of shape (N, C, H, W), window and stride >= 1, got x {x_shape}, "
                             f"window {kernel}, stride {stride}")
        for axis, size, k in zip(("height", "width"), x_shape[2:], kernel):
            if size < k:
                raise ValueError(f"the {axis} {size} of x is smaller than the window {k} (pool_{axis}); "
                                 "use a smaller window or a larger input")
        out_hw = tuple(conv_output_size(size, k, s) for size, k, s in zip(x_shape[2:], kernel, stride))
        for name, value in (("x_shape", x_shape), ("kernel", kernel), ("stride", stride), ("out_hw", out_hw)):
            object.__setattr__(self, name, value)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """(N, C, OH, OW)."""
        return self.x_shape[:2] + self.out_hw

    @property
    def tiles(self) -> bool:
        """Whether the windows cover every input element exactly once."""
        (kh, kw), (oh, ow) = self.kernel, self.out_hw
        return self.stride == self.kernel and self.x_shape[2:] == (kh * oh, kw * ow)

    def windows(self) -> list[tuple[slice, slice, slice, slice]]:
        """For each window offset (i, j), row-major: the index of the input elements at
        that offset of every window, an (N, C, OH, OW) strided slice."""
        (kh, kw), (oh, ow), (sh, sw) = self.kernel, self.out_hw, self.stride
        return [(slice(None), slice(None), _taps(i, oh, sh), _taps(j, ow, sw))
                for i in range(kh) for j in range(kw)]
