"""Compiled CPU kernels (numba) for the passes of :class:`~gpunet.backend.numpy_ops.NumpyOps`
that NumPy cannot run at memory speed: max pooling, its gradient routing, and the
bias + ReLU [+ max pool] epilogue of a convolution chunk.

Contract: every kernel gives bit for bit the result of the NumPy code it replaces (the same
comparisons and additions in the same order; tests/test_numba_kernels.py checks each against
the generic Ops). Each kernel works on samples ``start..stop`` of its arrays and releases the
GIL, so NumpyOps splits a call over the gpunet thread pool (:mod:`~gpunet.backend.threads`)
with results independent of the split; the kernels themselves are serial (numba's threading
layers spin against OpenBLAS's threads, and its OpenMP layer kills a process that forks after
using it: docs/bench.md). The 2x2 stride-2 pool (the common one) has its own unrolled loops.
Arrays as each kernel says (NumpyOps passes C-contiguous copies of others).

Optional: this module imports numba, and NumpyOps imports it only on first use of a kernel
(:func:`~gpunet.backend.numpy_ops.kernels`), never at ``import gpunet``. Functions compile
lazily per dtype and array layout on their first call and are cached on disk (``cache=True``;
where no cache location is writable they compile without it).
"""

from __future__ import annotations

import numba
import numpy as np


def _jit(fn=None, **options):
    """Compile ``fn`` as a nopython kernel (releasing the GIL), cached on disk when a cache
    location is writable."""
    if fn is None:
        return lambda f: _jit(f, **options)
    try:
        return numba.njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available" (read-only package, no HOME)
        return numba.njit(nogil=True, **options)(fn)


@_jit
def _larger(m: float, e: float) -> float:
    """np.maximum(m, e) of one element pair, bit for bit: m if m > e or m is NaN, else e (so
    e on a tie: np.maximum(-0.0, 0.0) is 0.0, np.maximum(0.0, -0.0) is -0.0)."""
    return m if (m > e or m != m) else e


@_jit
def _pool_plane(xs: np.ndarray, kh: int, kw: int, sh: int, sw: int, o: np.ndarray) -> None:
    """o (OH, OW) = max of xs (H, W) over each window, offsets chained in row-major order."""
    oh, ow = o.shape
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:
        for a in range(oh):
            r0, r1, orow = xs[2 * a], xs[2 * a + 1], o[a]
            for b in range(ow):
                orow[b] = _larger(_larger(_larger(r0[2 * b], r0[2 * b + 1]), r1[2 * b]), r1[2 * b + 1])
        return
    for a in range(oh):  # a row of windows, one window offset at a time: inner loops over outputs
        orow, first = o[a], xs[a * sh]
        for b in range(ow):
            orow[b] = first[b * sw]
        for u in range(kh):
            xr = xs[a * sh + u]
            for v in range(1 if u == 0 else 0, kw):
                for b in range(ow):
                    orow[b] = _larger(orow[b], xr[b * sw + v])


@_jit
def max_pool(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, out: np.ndarray, start: int, stop: int) -> None:
    """out (N, C, OH, OW) = max of x (N, C, H, W) over each (kh, kw) window, stride (sh, sw);
    NaN propagates (np.maximum over the window offsets in row-major order)."""
    c = out.shape[1]
    for p in range(start * c, stop * c):
        i, j = p // c, p % c
        _pool_plane(x[i, j], kh, kw, sh, sw, out[i, j])


@_jit
def bias_relu_pool(prod: np.ndarray, b: np.ndarray, relu: bool, kh: int, kw: int, sh: int, sw: int, out: np.ndarray,
                   pooled: np.ndarray, start: int, stop: int) -> None:
    """out (m, F, OH, OW) = prod (F, m, OH, >= OW: a convolution chunk's GEMM product) + b (F,),
    then max(out, 0) when ``relu``; then pooled (m, F, PH, PW) = its max pool when ``pooled``
    is not empty. The bias add and the maxima as NumPy's ufuncs compute them."""
    f, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    pool, zero = pooled.size > 0, out.dtype.type(0)
    for p in range(start * f, stop * f):
        i, j = p // f, p % f
        src, dst, bias = prod[j, i], out[i, j], b[j]
        for r in range(oh):
            srow, drow = src[r], dst[r]
            for q in range(ow):
                v = srow[q] + bias
                drow[q] = _larger(v, zero) if relu else v
        if pool:
            _pool_plane(dst, kh, kw, sh, sw, pooled[i, j])


@_jit
def _pick(xs: np.ndarray, o: float, r: int, q: int, kh: int, kw: int) -> int:
    """Row-major offset in the window at (r, q) that gets the gradient: the last NaN, else
    the first element equal to o, else -1 (the generic Ops' rule)."""
    pick = -1
    for u in range(kh):
        for v in range(kw):
            e = xs[r + u, q + v]
            if e != e or (e == o and pick < 0):
                pick = u * kw + v
    return pick


@_jit
def max_pool_backward(dout: np.ndarray, x: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                      relu: bool, swap: bool, dx: np.ndarray,
                      dout_bits: np.ndarray, dx_bits: np.ndarray, start: int, stop: int) -> None:
    """dx (N, C, H, >= W): each dout (N, C, OH, OW) added to the element of its window of x
    (N, C, H, W) that :func:`_pick` names, and, when ``relu``, only where x > 0 (the ReLU
    backward of x = relu(...)); zero elsewhere, also in dx's columns past W. Additions in the
    generic order: 0 + dout, then window offset by window offset in row-major order. With
    ``swap``, dx is (C, N, H, >= W) (a convolution's GEMM rows).
    ``dout_bits`` and ``dx_bits`` are integer views of dout and dx (the 2x2 stride-2 case
    selects by bits, branch-free); all arrays C-contiguous."""
    c, oh, ow = dout.shape[1], dout.shape[2], dout.shape[3]
    h, w = x.shape[2], x.shape[3]
    dw = dx.shape[3]
    pairs = kh == 2 and kw == 2 and sh == 2 and sw == 2  # windows never overlap
    for p in range(start * c, stop * c):
        i, j = p // c, p % c
        a, b = (j, i) if swap else (i, j)
        if pairs:
            _route_pairs(dout[i, j].reshape(oh * ow), dout_bits[i, j].reshape(oh * ow), x[i, j].reshape(h * w),
                         out[i, j].reshape(oh * ow), relu, dx_bits[a, b].reshape(h * dw), oh, ow, h, w, dw)
        else:
            _route(dout[i, j], x[i, j], out[i, j], kh, kw, sh, sw, relu, dx[a, b])


@_jit
def _route(g: np.ndarray, xs: np.ndarray, os: np.ndarray, kh: int, kw: int, sh: int, sw: int, relu: bool,
           d: np.ndarray) -> None:
    """:func:`max_pool_backward` of one plane, any geometry (d: H rows of >= W elements)."""
    oh, ow = g.shape
    d[:, :] = 0
    picks = np.empty((oh, ow), np.int64)
    for a in range(oh):
        for b in range(ow):
            picks[a, b] = _pick(xs, os[a, b], a * sh, b * sw, kh, kw)
    for k in range(kh * kw):
        u, v = k // kw, k % kw
        for a in range(oh):
            for b in range(ow):
                r, q = a * sh + u, b * sw + v
                if picks[a, b] == k and (not relu or xs[r, q] > 0):
                    d[r, q] += g[a, b]


@_jit
def _route_pairs(g: np.ndarray, g_bits: np.ndarray, xs: np.ndarray, os: np.ndarray, relu: bool, d_bits: np.ndarray,
                 oh: int, ow: int, h: int, w: int,
                 dw: int) -> None:
    """:func:`max_pool_backward` of one plane (flat arrays; rows of w elements in xs, of dw in
    d_bits) for 2x2 windows with stride 2: the gradient's bits (those of 0 + g: -0.0 becomes
    +0.0) ANDed with all-ones masks of the first maximum, branch-free; a plane holding NaN
    takes :func:`_pick` window by window."""
    d_bits[2 * oh * dw :] = 0  # rows and columns no window reaches
    for r in range(2 * oh):
        d_bits[r * dw + 2 * ow : (r + 1) * dw] = 0
    one = g_bits.dtype.type(1)
    nan = False
    for i in range(2 * oh * w):
        nan |= xs[i] != xs[i]
    if nan:  # the generic rule window by window: the last NaN of a window holding one gets the gradient
        for a in range(oh):
            for b in range(ow):
                j, i, t = a * ow + b, 2 * a * w + 2 * b, 2 * a * dw + 2 * b  # output, first element in xs, d
                k = _pick(xs.reshape(h, w), os[j], 2 * a, 2 * b, 2, 2)
                keep = k >= 0 and (not relu or xs[i + (k // 2) * w + k % 2] > 0)
                r = g_bits[j] & -(one * ((g[j] != 0) & keep))
                d_bits[t] = r & -(one * (k == 0))
                d_bits[t + 1] = r & -(one * (k == 1))
                d_bits[t + dw] = r & -(one * (k == 2))
                d_bits[t + dw + 1] = r & -(one * (k == 3))
        return
    for a in range(oh):
        x0, x1 = xs[2 * a * w : (2 * a + 1) * w], xs[(2 * a + 1) * w : (2 * a + 2) * w]
        d0, d1 = d_bits[2 * a * dw : (2 * a + 1) * dw], d_bits[(2 * a + 1) * dw : (2 * a + 2) * dw]
        gr, gbr, orow = g[a * ow : (a + 1) * ow], g_bits[a * ow : (a + 1) * ow], os[a * ow : (a + 1) * ow]
        for b in range(ow):
            o = orow[b]
            r = gbr[b] & -(one * ((gr[b] != 0) & ((not relu) | (o > 0))))
            m0 = -(one * (x0[2 * b] == o))
            m1 = -(one * (x0[2 * b + 1] == o)) & ~m0
            m2 = -(one * (x1[2 * b] == o)) & ~(m0 | m1)
            m3 = -(one * (x1[2 * b + 1] == o)) & ~(m0 | m1 | m2)
            d0[2 * b] = r & m0
            d0[2 * b + 1] = r & m1
            d1[2 * b] = r & m2
            d1[2 * b + 1] = r & m3


@_jit
def relu_rows(dout_bits: np.ndarray, s: np.ndarray, rows_bits: np.ndarray, start: int, stop: int) -> None:
    """GEMM rows (F, m, OH, >= OW) = where(s > 0, dout, 0) for dout and s (m, F, OH, OW), by
    bits (integer views of dout and the rows); zeros past OW."""
    f, oh, ow = s.shape[1], s.shape[2], s.shape[3]
    width = rows_bits.shape[3]
    one = rows_bits.dtype.type(1)
    for p in range(start * f, stop * f):
        i, j = p // f, p % f
        g, y, d = dout_bits[i, j], s[i, j], rows_bits[j, i]
        for r in range(oh):
            grow, yrow, drow = g[r], y[r], d[r]
            for q in range(ow):
                drow[q] = grow[q] & -(one * (yrow[q] > 0))
            for q in range(ow, width):
                drow[q] = 0
