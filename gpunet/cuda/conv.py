"""Convolution kernels: im2col (one thread per column element) and col2im (a gather:
one thread per input pixel sums the columns that touch it; no atomics, deterministic).

Column layout as in :mod:`gpunet.backend.ops`: ``cols`` has shape ``(C*kh*kw, N*OH*OW)``,
rows ordered ``(c, i, j)``, columns ``(n, oh, ow)``. The geometry (stride, padding and
dilation as (h, w) pairs, output size floored) is a
:class:`~gpunet.backend.geometry.ConvGeometry`. Conv forward/backward then need one GEMM
per product (``xp.matmul`` = cuBLAS on CuPy).
"""

from ..backend.geometry import ConvGeometry
from .lazy import ACCUMULATOR_PREAMBLE, LazyKernel

_GEOMETRY_NAMES = ("C", "H", "W", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "N", "OH", "OW")
_GEOMETRY = ", ".join(f"int32 {name}" for name in _GEOMETRY_NAMES)

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
    const ptrdiff_t y = oh * sh - ph + ki * dh;
    const ptrdiff_t xw = ow * sw - pw + kj * dw;
    col = (y >= 0 && y < H && xw >= 0 && xw < W) ? x[((n * C + c) * H + y) * W + xw] : T(0);
    """,
    scalars=_GEOMETRY_NAMES,
    raw_ndim={"x": 4},
    doc="col[(c,ki,kj), (n,oh,ow)] = x[n, c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw], 0 outside x.",
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
    // kernel taps (ki, kj) in increasing order, as the generic col2im adds them; tap ki
    // meets the pixel from output row oh = (py - ki*dh) / sh when that divides exactly
    for (ptrdiff_t ki = 0; ki < kh && ki * dh <= py; ++ki) {
      const ptrdiff_t ty = py - ki * dh;
      const ptrdiff_t oh = ty / sh;
      if (oh * sh != ty || oh >= OH) continue;
      for (ptrdiff_t kj = 0; kj < kw && kj * dw <= px; ++kj) {
        const ptrdiff_t tx = px - kj * dw;
        const ptrdiff_t ow = tx / sw;
        if (ow * sw != tx || ow >= OW) continue;
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


def _scalars(geo: ConvGeometry, n: int) -> tuple[int, ...]:
    """The kernels' geometry scalars (``_GEOMETRY_NAMES``) for ``n`` samples."""
    _, c, h, w = geo.x_shape
    _, _, kh, kw = geo.w_shape
    return (c, h, w, kh, kw, *geo.stride, *geo.pad, *geo.dilation, n, *geo.out_hw)


def im2col(xp, x, geo: ConvGeometry):
    """Columns ``(C*kh*kw, n*OH*OW)`` of the zero-padded ``x`` (n, C, H, W), one kernel launch."""
    n, (oh, ow) = x.shape[0], geo.out_hw
    cols = xp.empty((geo.rows, n * oh * ow), dtype=x.dtype)
    IM2COL(xp.ascontiguousarray(x), *_scalars(geo, n), cols)
    return cols


def col2im(xp, cols, geo: ConvGeometry):
    """Adjoint of :func:`im2col`: the columns (C*kh*kw, n*OH*OW) summed into (n, C, H, W)."""
    oh, ow = geo.out_hw
    n = cols.shape[1] // (oh * ow)
    if tuple(cols.shape) != (geo.rows, n * oh * ow):
        raise ValueError(f"cols has shape {tuple(cols.shape)}; expected (C*kh*kw, n*OH*OW) = "
                         f"({geo.rows}, n*{oh * ow}) for the geometry {geo}")
    img = xp.empty((n,) + geo.x_shape[1:], dtype=cols.dtype)
    COL2IM(xp.ascontiguousarray(cols), *_scalars(geo, n), img)
    return img
