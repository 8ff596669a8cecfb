"""Convolution kernels: im2col (one thread per column element) and col2im (a gather:
one thread per input pixel sums the columns that touch it; no atomics, deterministic).

Column layout as in :mod:`gpunet.backend.ops`: ``cols`` has shape ``(C*kh*kw, N*OH*OW)``,
rows ordered ``(c, i, j)``, columns ``(n, oh, ow)``. Stride and padding are (h, w)
pairs; dilation is 1. Conv forward/backward then need one GEMM per product
(``xp.matmul`` = cuBLAS on CuPy).
"""

from ..backend.ops import conv_output_size
from .lazy import ACCUMULATOR_PREAMBLE, LazyKernel

_GEOMETRY = ("int32 C, int32 H, int32 W, int32 kh, int32 kw, int32 sh, int32 sw, "
             "int32 ph, int32 pw, int32 N, int32 OH, int32 OW")
_GEOMETRY_NAMES = ("C", "H", "W", "kh", "kw", "sh", "sw", "ph", "pw", "N", "OH", "OW")

IM2COL = LazyKernel(
    "gpunet_im2col",
    "raw T x, " + _GEOMETRY, "T col",
    """
    // i: C-order index into col (C*kh*kw, N*OH*OW) = (c, ki, kj, n, oh, ow)
    const ptrdiff_t ow = i % OW;
    ptrdiff_t t = i / OW;
    const ptrdiff_t oh = t % OH;  t /= OH;
    const ptrdiff_t n = t % N;    t /= N;
    const ptrdiff_t kj = t % kw;  t /= kw;
    const ptrdiff_t ki = t % kh;
    const ptrdiff_t c = t / kh;
    const ptrdiff_t y = oh * sh - ph + ki;
    const ptrdiff_t xw = ow * sw - pw + kj;
    col = (y >= 0 && y < H && xw >= 0 && xw < W) ? x[((n * C + c) * H + y) * W + xw] : T(0);
    """,
    scalars=_GEOMETRY_NAMES,
    raw_ndim={"x": 4},
    doc="col[(c,ki,kj), (n,oh,ow)] = x[n, c, oh*sh - ph + ki, ow*sw - pw + kj], 0 outside x.",
)

COL2IM = LazyKernel(
    "gpunet_col2im",
    "raw T col, " + _GEOMETRY, "T img",
    """
    // i: C-order index into img (N, C, H, W); (py, px) is the pixel in the padded image.
    typedef typename gpunet_acc<T>::type A;
    const ptrdiff_t px = i % W + pw;
    ptrdiff_t t = i / W;
    const ptrdiff_t py = t % H + ph;  t /= H;
    const ptrdiff_t c = t % C;
    const ptrdiff_t n = t / C;
    const ptrdiff_t P = (ptrdiff_t)OH * OW;
    A acc = A(0);
    // window offsets (ki, kj) in increasing order, as the generic col2im adds them
    for (ptrdiff_t ki = py % sh; ki < kh && ki <= py; ki += sh) {
      const ptrdiff_t oh = (py - ki) / sh;
      if (oh >= OH) continue;
      for (ptrdiff_t kj = px % sw; kj < kw && kj <= px; kj += sw) {
        const ptrdiff_t ow = (px - kj) / sw;
        if (ow >= OW) continue;
        acc += A(col[(((c * kh + ki) * kw + kj) * N + n) * P + oh * OW + ow]);
      }
    }
    img = T(acc);
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    scalars=_GEOMETRY_NAMES,
    raw_ndim={"col": 2},
    doc="img[n,c,y,x] = sum of the col entries whose window covers pixel (y, x) (adjoint of im2col).",
)


def _geometry(x_shape, kh, kw, stride, pad):
    n, c, h, w = x_shape
    (sh, sw), (ph, pw) = stride, pad
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or oh < 1 or ow < 1:
        raise ValueError(
            f"no output for input (H, W) = {(h, w)}, kernel {(kh, kw)}, stride {stride}, "
            f"pad {pad}: need kernel/stride >= 1, pad >= 0 and kernel <= input + 2*pad")
    return (c, h, w, kh, kw, sh, sw, ph, pw, n, oh, ow)


def im2col(xp, x, kh: int, kw: int, stride, pad):
    """Columns ``(C*kh*kw, N*OH*OW)`` of the zero-padded ``x`` (N, C, H, W), one kernel launch."""
    geometry = _geometry(x.shape, kh, kw, stride, pad)
    c, n, oh, ow = geometry[0], geometry[9], geometry[10], geometry[11]
    cols = xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    IM2COL(xp.ascontiguousarray(x), *geometry, cols)
    return cols


def col2im(xp, cols, x_shape, kh: int, kw: int, stride, pad):
    """Adjoint of :func:`im2col`: an array of ``x_shape`` (N, C, H, W) summing ``cols``."""
    geometry = _geometry(tuple(x_shape), kh, kw, stride, pad)
    c, n, oh, ow = geometry[0], geometry[9], geometry[10], geometry[11]
    if tuple(cols.shape) != (c * kh * kw, n * oh * ow):
        raise ValueError(f"cols has shape {tuple(cols.shape)}; expected "
                         f"{(c * kh * kw, n * oh * ow)} for x_shape {tuple(x_shape)}")
    img = xp.empty(tuple(x_shape), dtype=cols.dtype)
    COL2IM(xp.ascontiguousarray(cols), *geometry, img)
    return img
