"""``NumpyOps``: NumPy (CPU) versions of the hot primitives of :class:`~gpunet.backend.ops.Ops`.

Same results as the generic versions (``tests/test_numpy_ops.py`` compares every method),
written for NumPy's loops and OpenBLAS:

* strided views instead of copies, outputs written in place (``out=``);
* branch-free selection: ``np.where`` over a data-dependent mask mispredicts a branch
  per element (5-8x slower than a pass of arithmetic), so ``where(mask, a, 0)`` is a
  bitwise AND of ``a``'s bits with an all-ones/all-zeros integer mask, bit-exact;
* convolution in batch chunks whose columns stay in cache (and within the column
  budget); at stride 1 each sample is padded once and every im2col row is one contiguous
  copy (:class:`ConvColumns`), written straight into the GEMM operand; the bias add is
  fused into the one transposing copy of the output; the backward pass recomputes a
  chunk's columns instead of keeping the whole column matrix, and computes dx (stride 1)
  as a convolution of dout with the flipped filters, the GEMM shape BLAS runs fastest;
* conv - ReLU [- max pool] fused chunk by chunk (ReLU and pooling while the chunk is in
  cache; the pooled gradient never exists as a full-size array, and the ReLU backward runs
  on the pooled gradient, a quarter of the elements of a 2x2 pool);
* passes that are not GEMMs (copies, pooling, ReLU, epilogues, optimizer updates) split
  over the thread pool of :mod:`~gpunet.backend.threads` by samples, channels or elements:
  each part runs the same operations, so results do not depend on the thread count;
* where numba is installed (the ``cpu`` extra; ``GPUNET_NUMBA=0`` turns it off), the passes
  NumPy cannot run at memory speed are compiled (:mod:`~gpunet.backend.numba_kernels`, bit
  for bit the same results): max pooling and its backward, the conv chunk's bias + ReLU
  [+ pool] epilogue, and the ReLU [+ pool] backward written straight into the GEMM rows;
* ``np.dot`` where ``np.matmul`` would miss BLAS (an inner dimension of 1);
* scratch arrays (column buffers, masks) come from a small per-thread workspace that is
  reused across calls, and masks are built in cache-sized blocks: fresh memory costs
  page faults (measured at a quarter to a third of a CNN step on the reference machine).

NumPy-only code, outside the portable core; any input it is not written for (mixed
dtypes, broadcasting, non-float data, without numba a max pool over NaN) goes to the
generic version.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import numpy.typing

from .. import _install
from . import threads
from .geometry import ConvGeometry, PoolGeometry
from .ops import ConvSaved, Ops, chunks

_INT = {2: np.int16, 4: np.int32, 8: np.int64}

#: Target bytes of one chunk of convolution columns: small enough to stay in the
#: last-level cache between im2col and the GEMMs that read it (measured with
#: ``scripts/bench.py``), and never above the column budget.
CHUNK_BYTES = 3 * 2**20


def _float(*arrays) -> bool:
    """All NumPy arrays of one floating dtype whose width has an integer twin."""
    first = arrays[0]
    return (all(isinstance(a, np.ndarray) and a.dtype == first.dtype for a in arrays)
            and first.dtype.kind == "f" and first.dtype.itemsize in _INT)


#: Elements per block of the blockwise elementwise passes (their temporaries stay in L2).
BLOCK = 1 << 16

#: Arrays up to this many elements take np.where (cheaper than the branch-free passes).
SMALL = 2048

#: Scratch arrays larger than this are not kept between calls.
SCRATCH_KEEP_BYTES = 64 * 2**20

#: Temporaries up to this size are allocated fresh (the allocator reuses them without page
#: faults); larger ones come from the per-thread scratch.
SMALL_TEMP_BYTES = 64 * 2**10

#: Bytes of a pass below which it is not split over threads (a hand-off costs tens of us).
PART_BYTES = 256 * 2**10


def _item_bytes(a: np.ndarray) -> int:
    """Bytes of ``a[i]`` (also for an empty ``a``)."""
    return a.itemsize * math.prod(a.shape[1:])


def _split(fn, n: int, item_bytes: int) -> None:
    """``fn(start, stop)`` over ``range(n)`` (items of ``item_bytes``), split over the thread
    pool (:mod:`~gpunet.backend.threads`) in parts of at least PART_BYTES."""
    threads.parallel(fn, n, -(-PART_BYTES // max(item_bytes, 1)))


NUMBA_ENV = "GPUNET_NUMBA"
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")
_numba: dict = {}  # "module": the kernels module or None, once decided


def kernels():
    """The compiled kernels (:mod:`gpunet.backend.numba_kernels`), or None: numba is not
    importable, or ``GPUNET_NUMBA=0``. Decided on first use (numba is imported then, never at
    import), from ``GPUNET_NUMBA``: unset/auto = numba when importable, 1 = numba or an error."""
    if "module" in _numba:
        return _numba["module"]
    raw = os.environ.get(NUMBA_ENV, "").strip().lower()
    if raw not in _ON + _OFF + ("", "auto"):
        raise ValueError(f"environment variable {NUMBA_ENV} must be 0 (NumPy only), 1 (the numba kernels) or "
                         f"auto/unset (numba when installed), got {raw!r}; fix or unset it")
    module = None
    if raw not in _OFF:
        try:
            from . import numba_kernels as module
        except ImportError as exc:
            if raw in _ON:
                raise ImportError(f"{NUMBA_ENV}={raw} asks for the numba kernels, but numba cannot be imported "
                                  f"({exc}); {_install.pip_install('cpu')}, or unset {NUMBA_ENV}") from exc
    _numba["module"] = module
    return module


def _kernels_for(*arrays):
    """The kernels when they serve these arrays (float32 or float64; others take NumPy), else None."""
    return kernels() if arrays[0].dtype in (np.float32, np.float64) else None


def _launch(name: str, n: int, item_bytes: int, *args) -> None:
    """The compiled kernel ``name(*args, start, stop)`` over samples 0..n (``item_bytes`` each),
    split over the thread pool (:mod:`.threads`) like the NumPy passes."""
    kernel = getattr(kernels(), name)
    _split(lambda a, z: kernel(*args, a, z), n, item_bytes)


class _Scratch(threading.local):
    """Per-thread scratch buffers, reused across calls; never handed to a caller."""

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, key: str, size: int, dtype: np.typing.DTypeLike) -> np.ndarray:
        """A 1-D array of ``size`` elements of ``dtype`` (contents undefined)."""
        dtype = np.dtype(dtype)
        nbytes = size * dtype.itemsize
        buf = self.buffers.get(key)
        if buf is None or buf.nbytes < nbytes:
            buf = np.empty(max(nbytes, 1), np.uint8)
            if nbytes <= SCRATCH_KEEP_BYTES:
                self.buffers[key] = buf
        return buf[:nbytes].view(dtype)


_scratch = _Scratch()


def _mask(cond: np.ndarray, itemsize: int, out: np.ndarray | None = None) -> np.ndarray:
    """Integer array (``itemsize`` bytes) of all ones where ``cond``, zero elsewhere."""
    return np.negative(cond, dtype=_INT[itemsize], out=out)


def _select(cond: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``where(cond, a, 0.0)`` bit for bit, without a branch per element."""
    it = _INT[a.dtype.itemsize]
    if out is None:
        out = np.empty(a.shape, a.dtype)
    np.bitwise_and(a.view(it), _mask(cond, a.dtype.itemsize), out=out.view(it))
    return out


def _has_nan(a: np.ndarray) -> bool:
    """Whether ``a`` holds a NaN (one pass, no temporary: the maximum propagates NaN)."""
    return a.size > 0 and bool(np.isnan(np.max(a)))


def _blocks(size: int, block: int = BLOCK):
    """(start, stop) pairs covering range(size) in steps of ``block``."""
    return [(s, min(s + block, size)) for s in range(0, size, block)]


def _span(t: int, size: int, s: int, p: int, n_out: int):
    """For a tap ``t`` elements into the window: the output range [o0, o1) whose input
    element ``o*s + t - p`` lies inside [0, size), and the first such input element."""
    o0 = max(0, -((t - p) // s)) if t < p else 0
    o1 = min(n_out, (size - 1 - t + p) // s + 1)
    return o0, max(o1, o0), o0 * s + t - p


def _im2col_into(cols6: np.ndarray, x: np.ndarray, geo: ConvGeometry) -> None:
    """Fill ``cols6`` (C, kh, kw, n, OH, OW) with the zero-padded windows of x (n, C, H, W)."""
    c, kh, kw, n, oh, ow = cols6.shape
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.pad, geo.dilation
    h, w = x.shape[2], x.shape[3]
    xt = x.transpose(1, 0, 2, 3)  # (C, n, H, W) view
    for i in range(kh):
        r0, r1, h0 = _span(i * dh, h, sh, ph, oh)
        for j in range(kw):
            c0, c1, w0 = _span(j * dw, w, sw, pw, ow)
            dst = cols6[:, i, j]
            if r0 > 0 or r1 < oh or c0 > 0 or c1 < ow:  # this tap reaches into the padding
                dst[...] = 0
            if r1 > r0 and c1 > c0:
                dst[:, :, r0:r1, c0:c1] = xt[:, :, h0 : h0 + sh * (r1 - r0 - 1) + 1 : sh,
                                             w0 : w0 + sw * (c1 - c0 - 1) + 1 : sw]


def _col2im_add(dx: np.ndarray, cols6: np.ndarray, geo: ConvGeometry) -> None:
    """Add the columns ``cols6`` (C, kh, kw, n, OH, OW) back onto dx (n, C, H, W) in place,
    kernel taps in row-major order (the order of the generic col2im)."""
    c, kh, kw, n, oh, ow = cols6.shape
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.pad, geo.dilation
    h, w = dx.shape[2], dx.shape[3]
    dxt = dx.transpose(1, 0, 2, 3)
    for i in range(kh):
        r0, r1, h0 = _span(i * dh, h, sh, ph, oh)
        for j in range(kw):
            c0, c1, w0 = _span(j * dw, w, sw, pw, ow)
            if r1 > r0 and c1 > c0:
                region = dxt[:, :, h0 : h0 + sh * (r1 - r0 - 1) + 1 : sh, w0 : w0 + sw * (c1 - c0 - 1) + 1 : sw]
                np.add(region, cols6[:, i, j, :, r0:r1, c0:c1], out=region)


class ConvColumns:
    """One convolution's im2col and col2im for batch chunks, built once per layer call.

    Stride 1 (the common case) uses padded rows: each sample is zero-padded once into a
    (C, Hp + 1, Wp) block, and the window of kernel tap (i, j) over all outputs is then
    one contiguous run of OH*Wp elements starting at i*dh*Wp + j*dw. The columns get Wp
    instead of OW entries per output row (the extra ones are discarded, their gradients
    are zero), and im2col/col2im become copies/adds of long contiguous runs. Other
    strides use per-tap strided slices (:func:`_im2col_into`).
    """

    def __init__(self, geo: ConvGeometry):
        self.geo = geo
        self.n, self.c, self.h, self.w = geo.x_shape
        self.f, _, self.kh, self.kw = geo.w_shape
        self.oh, self.ow = geo.out_hw
        self.k = geo.rows
        self.rows_mode = geo.stride == (1, 1)
        self.hp, self.wp = self.h + 2 * geo.pad[0], self.w + 2 * geo.pad[1]
        self.row = self.wp if self.rows_mode else self.ow  # column entries per output row
        self.cols_per_sample = self.oh * self.row

    def workspace(self, key: str, nb: int, dtype):
        """Zero-padded sample blocks (nb, C, Hp + 1, Wp) for the padded-rows mode (scratch)."""
        if not self.rows_mode:
            return None
        shape = (nb, self.c, self.hp + 1, self.wp)
        block = _scratch.get(key, nb * self.c * (self.hp + 1) * self.wp, dtype).reshape(shape)
        block[...] = 0
        return block

    def _runs(self, block: np.ndarray, offset: int, shape, order):
        """Strided view of ``block`` (nb, C, Hp + 1, Wp): for each (c, [i, j,] n) a run of
        OH*Wp elements starting at ``offset`` (+ i*dh*Wp + j*dw)."""
        it = block.itemsize
        dh, dw = self.geo.dilation
        strides = {"c": block.strides[1], "i": dh * self.wp * it, "j": dw * it, "n": block.strides[0], "p": it}
        flat = block.reshape(-1)[offset:]
        return np.lib.stride_tricks.as_strided(flat, shape=shape, strides=[strides[a] for a in order])

    def columns(self, xs: np.ndarray, work, buf: np.ndarray) -> np.ndarray:
        """im2col of the chunk xs (m, C, H, W) into ``buf``: (K, m * cols_per_sample)."""
        m = xs.shape[0]
        cols = buf[: self.k * m * self.cols_per_sample].reshape(self.k, m * self.cols_per_sample)
        if not self.rows_mode:
            cols6 = cols.reshape(self.c, self.kh, self.kw, m, self.oh, self.ow)
            _split(lambda a, z: _im2col_into(cols6[a:z], xs[:, a:z], self.geo), self.c, _item_bytes(cols6))
            return cols
        ph, pw = self.geo.pad
        cols5 = cols.reshape(self.c, self.kh, self.kw, m, self.cols_per_sample)
        runs = self._runs(work, 0, cols5.shape, "cijnp")

        def copy(a: int, z: int):  # channels a..z: pad them, then copy their runs
            work[:m, a:z, ph : ph + self.h, pw : pw + self.w] = xs[:, a:z]
            np.copyto(cols5[a:z], runs[a:z])

        _split(copy, self.c, _item_bytes(cols5))
        return cols

    def output_view(self, prod: np.ndarray, m: int) -> np.ndarray:
        """(m, F, OH, OW) view of a chunk's GEMM product (F, m * cols_per_sample)."""
        return prod.reshape(self.f, m, self.oh, self.row)[..., : self.ow].transpose(1, 0, 2, 3)

    def gradient_rows(self, dout_part, start: int, m: int, buf: np.ndarray, sums: np.ndarray, fill=None):
        """The gradient of samples start..start+m as GEMM rows (F, m * cols_per_sample), zeros
        in the discarded entries, and as an (m, F, OH, OW) view of them; ``sums[:m]`` (F
        columns) gets each sample's sum over its row (the same sums whichever way the rows
        were written). ``dout_part(a, k)`` gives the gradient (k, F, OH, OW) of samples
        a..a+k; it is called over parts of the samples in parallel. Or ``fill(start, m, rows)``
        writes the rows (F, m, OH, row) itself."""
        d = buf[: self.f * m * self.cols_per_sample].reshape(self.f, m, self.oh, self.row)

        def rows(a: int, z: int):  # samples start+a..start+z
            if fill is None:
                g = dout_part(start + a, z - a)
                if self.row > self.ow:
                    d[:, a:z, :, self.ow :] = 0
                np.copyto(d[:, a:z, :, : self.ow], g.transpose(1, 0, 2, 3))
            np.sum(d[:, a:z].reshape(self.f, z - a, self.cols_per_sample), axis=2, out=sums[a:z].T)

        if fill is not None:
            fill(start, m, d)
        _split(rows, m, self.f * self.cols_per_sample * d.itemsize)
        return d.reshape(self.f, m * self.cols_per_sample), d[..., : self.ow].transpose(1, 0, 2, 3)

    def add_columns(self, dx: np.ndarray, dcols: np.ndarray, work) -> None:
        """col2im: dx (m, C, H, W) = the columns dcols (K, m * cols_per_sample) summed back
        onto the input, kernel taps in row-major order (as the generic col2im)."""
        m = dx.shape[0]
        d6 = dcols.reshape(self.c, self.kh, self.kw, m, self.cols_per_sample)
        if not self.rows_mode:
            cols6 = d6.reshape(self.c, self.kh, self.kw, m, self.oh, self.ow)

            def add_strided(a: int, z: int):  # channels a..z
                dx[:, a:z] = 0
                _col2im_add(dx[:, a:z], cols6[a:z], self.geo)

            _split(add_strided, self.c, _item_bytes(d6))
            return
        dh, dw = self.geo.dilation
        ph, pw = self.geo.pad
        taps = [self._runs(work, i * dh * self.wp + j * dw, (self.c, m, self.cols_per_sample), "cnp")
                for i in range(self.kh) for j in range(self.kw)]

        def add(a: int, z: int):  # channels a..z, kernel taps in row-major order
            work[:m, a:z] = 0
            for t, runs in enumerate(taps):
                np.add(runs[a:z], d6[a:z, t // self.kw, t % self.kw], out=runs[a:z])
            dx[:, a:z] = work[:m, a:z, ph : ph + self.h, pw : pw + self.w]

        _split(add, self.c, _item_bytes(d6))

    def transposed(self) -> ConvColumns | None:
        """For stride 1: dx of this convolution is the convolution of dout, padded by
        dilation*(k - 1) - pad, with the flipped filters; its columns (None when the
        stride is not 1 or the padding exceeds the kernel's extent)."""
        (ph, pw), (dh, dw) = self.geo.pad, self.geo.dilation
        eh, ew = dh * (self.kh - 1), dw * (self.kw - 1)
        if not self.rows_mode or ph > eh or pw > ew:
            return None
        return ConvColumns(ConvGeometry((self.n, self.f, self.oh, self.ow), (self.c, self.f, self.kh, self.kw),
                                        (1, 1), (eh - ph, ew - pw), (dh, dw)))


class NumpyOps(Ops):
    """NumPy (CPU) versions; identical results to :class:`Ops`."""

    name = "numpy"

    # --- activations (outputs allocated as arrays: a 0-d input gets a 0-d array) ------
    def sigmoid(self, x: np.ndarray):
        if not _float(x):
            return super().sigmoid(x)
        it = _INT[x.dtype.itemsize]
        sign = np.array(-(2 ** (8 * x.dtype.itemsize - 1)), it)  # the sign bit alone
        out = np.empty(x.shape, x.dtype)
        xf, of = x.reshape(-1), out.reshape(-1)
        e = _scratch.get("sigmoid_e", min(BLOCK, xf.size), x.dtype)
        step = _scratch.get("sigmoid_step", min(BLOCK, xf.size), x.dtype)
        for a, z in _blocks(xf.size):  # temporaries in cache
            xs, eb, sb, o = xf[a:z], e[: z - a], step[: z - a], of[a:z]
            np.bitwise_or(xs.view(it), sign, out=eb.view(it))  # -|x|, by its sign bit
            np.exp(eb, out=eb)  # e = exp(-|x|) in [0, 1]
            np.add(eb, 1, out=o)
            # the numerator where(x >= 0, 1, e), branch-free: max(e, 1.0 or 0.0), as 0 <= e <= 1
            np.greater_equal(xs, 0, out=sb, casting="unsafe")
            np.maximum(eb, sb, out=eb)
            np.divide(eb, o, out=o)
        return out

    def sigmoid_backward(self, dy: np.ndarray, y: np.ndarray):
        if not _float(dy, y) or dy.shape != y.shape:
            return super().sigmoid_backward(dy, y)
        out = np.multiply(dy, y, out=np.empty(dy.shape, dy.dtype))
        out *= np.subtract(1, y)
        return out

    def relu_backward(self, dy: np.ndarray, y: np.ndarray):
        if not _float(dy, y) or dy.shape != y.shape:
            return super().relu_backward(dy, y)
        if dy.size <= SMALL:  # a mispredicted branch costs less than three passes here
            return np.where(np.greater(y, 0), dy, dy.dtype.type(0))
        if dy.size <= BLOCK or not (dy.flags.c_contiguous and y.flags.c_contiguous):
            return _select(np.greater(y, 0), dy)
        return self._relu_backward_into(dy, y, np.empty(dy.shape, dy.dtype))

    def relu_backward_(self, dy: np.ndarray, y: np.ndarray):
        if not _float(dy, y) or dy.shape != y.shape or not (dy.flags.c_contiguous and y.flags.c_contiguous
                                                              and dy.flags.writeable):
            return super().relu_backward_(dy, y)
        return self._relu_backward_into(dy, y, dy)

    @staticmethod
    def _relu_backward_into(dy: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        """where(y > 0, dy, 0) into ``out`` (may be dy), by bits, block by block."""
        it = _INT[dy.dtype.itemsize]
        d, yy, o = dy.reshape(-1).view(it), y.reshape(-1), out.reshape(-1).view(it)

        def blocks(first: int, last: int):  # blocks first..last of the flat arrays
            hit = _scratch.get("relu_hit", min(BLOCK, d.size), np.bool_)
            mask = _scratch.get("relu_mask", min(BLOCK, d.size), it)
            for a in range(first * BLOCK, min(last * BLOCK, d.size), BLOCK):  # temporaries in cache
                z = min(a + BLOCK, d.size)
                h, m = hit[: z - a], mask[: z - a]
                np.greater(yy[a:z], 0, out=h)
                np.negative(h, dtype=it, out=m)
                np.bitwise_and(d[a:z], m, out=o[a:z])

        _split(blocks, -(-d.size // BLOCK), BLOCK * dy.itemsize)
        return out

    def relu_(self, x: np.ndarray):
        if not _float(x) or not x.flags.writeable:
            return super().relu_(x)
        if x.ndim == 0 or not x.flags.c_contiguous:
            return np.maximum(x, 0.0, out=x)
        flat = x.reshape(-1)
        _split(lambda a, z: np.maximum(flat[a:z], 0.0, out=flat[a:z]), flat.size, flat.itemsize)
        return x

    def leaky_relu_backward(self, dy: np.ndarray, x: np.ndarray, slope: float):
        if not _float(dy, x) or dy.shape != x.shape:
            return super().leaky_relu_backward(dy, x, slope)
        it = _INT[dy.dtype.itemsize]
        scaled = np.multiply(dy, slope, out=np.empty(dy.shape, dy.dtype))
        out = np.bitwise_xor(scaled.view(it), dy.view(it), out=np.empty(dy.shape, it))  # where(x > 0, dy, scaled):
        out &= _mask(np.greater(x, 0), dy.dtype.itemsize)  # scaled ^ ((scaled ^ dy) & mask)
        out ^= scaled.view(it)
        return out.view(dy.dtype)

    def bias_relu(self, x: np.ndarray, b: np.ndarray):
        if not _float(x, b) or b.ndim != 1 or x.shape[-1:] != b.shape:
            return super().bias_relu(x, b)
        out = np.add(x, b)
        np.maximum(out, 0.0, out=out)
        return out

    # --- convolution ------------------------------------------------------------
    def im2col(self, x: np.ndarray, geo: ConvGeometry):
        if not _float(x):
            return super().im2col(x, geo)
        n, (oh, ow), (_, c, kh, kw) = x.shape[0], geo.out_hw, geo.w_shape
        cols = np.empty((c, kh, kw, n, oh, ow), x.dtype)
        _im2col_into(cols, x, geo)
        return cols.reshape(c * kh * kw, n * oh * ow)

    def col2im(self, cols: np.ndarray, geo: ConvGeometry):
        if not _float(cols):
            return super().col2im(cols, geo)
        (oh, ow), (_, c, kh, kw) = geo.out_hw, geo.w_shape
        n = cols.shape[1] // (oh * ow)
        dx = np.zeros((n,) + geo.x_shape[1:], cols.dtype)
        _col2im_add(dx, cols.reshape(c, kh, kw, n, oh, ow), geo)
        return dx

    def _chunk(self, n: int, sample_bytes: int, budget) -> int:
        """Samples per chunk: about CHUNK_BYTES of columns, never above ``budget``."""
        target = CHUNK_BYTES if budget is None else min(CHUNK_BYTES, budget)
        return self.conv_chunk(n, sample_bytes, target)

    def conv2d_forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, geo: ConvGeometry, budget=None):
        if not _float(x, w, b):
            return super().conv2d_forward(x, w, b, geo, budget)
        return self._conv_forward(x, w, b, ConvColumns(geo), budget), ConvSaved(x=x)

    def _conv_forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, plan: ConvColumns, budget,
                      relu: bool = False, pool: PoolGeometry | None = None, pooled: np.ndarray | None = None):
        """conv(x) + b (N, F, OH, OW) chunk by chunk; then, while each chunk is in cache, its
        ReLU (``relu``) and its max pool over ``pool`` into ``pooled``."""
        f, k, n = plan.f, plan.k, x.shape[0]
        nb = self._chunk(n, k * plan.cols_per_sample * x.dtype.itemsize, budget)
        w2, b4 = w.reshape(f, k), b.reshape(1, f, 1, 1)
        out = np.empty((n, f, plan.oh, plan.ow), x.dtype)
        cols_buf = _scratch.get("conv_cols", k * nb * plan.cols_per_sample, x.dtype)
        prod_buf = _scratch.get("conv_prod", f * nb * plan.cols_per_sample, x.dtype)
        work = plan.workspace("conv_pad", nb, x.dtype)
        compiled = _kernels_for(x)
        kh, kw, sh, sw = (*pool.kernel, *pool.stride) if pool is not None else (1, 1, 1, 1)
        for s in range(0, n, nb):
            m = min(nb, n - s)
            cols = plan.columns(x[s : s + m], work, cols_buf)
            prod = np.matmul(w2, cols, out=prod_buf[: f * cols.shape[1]].reshape(f, cols.shape[1]))
            if compiled is not None:  # bias, ReLU and pool in one pass
                _launch("bias_relu_pool", m, _item_bytes(out), prod.reshape(f, m, plan.oh, plan.row), b, relu,
                        kh, kw, sh, sw, out[s : s + m], out[:0] if pooled is None else pooled[s : s + m])
                continue
            view = plan.output_view(prod, m)

            def finish(a: int, z: int, s=s, view=view):  # samples s+a..s+z: bias, ReLU, pool
                o = out[s + a : s + z]
                np.add(view[a:z], b4, out=o)
                if relu:
                    np.maximum(o, 0.0, out=o)
                if pool is not None and pooled is not None:
                    self._max_pool_into(o, pool, pooled[s + a : s + z])

            _split(finish, m, _item_bytes(out))
        return out

    def conv2d_backward(self, dout: np.ndarray, w: np.ndarray, geo: ConvGeometry, saved: ConvSaved,
                        compute_dx: bool = True, budget=None):
        x = saved.x
        if x is None or not _float(dout, w, x):
            return super().conv2d_backward(dout, w, geo, saved, compute_dx, budget)
        return self._conv_backward(lambda s, m: dout[s : s + m], x, w, ConvColumns(geo), compute_dx, budget)

    def _conv_backward(self, dout_chunk, x: np.ndarray, w: np.ndarray, plan: ConvColumns, compute_dx, budget,
                       fill_rows=None):
        """(dx, dw, db) of a convolution chunk by chunk; ``dout_chunk(start, m)`` gives the
        gradient (m, F, OH, OW) of samples start..start+m (it may be computed on the fly), or
        ``fill_rows(start, m, rows)`` writes it as GEMM rows (F, m, OH, Wp), zeros past OW."""
        f, k, n, dtype = plan.f, plan.k, x.shape[0], x.dtype
        nb = self._chunk(n, k * plan.cols_per_sample * dtype.itemsize, budget)
        # dx: stride 1 is a convolution of dout with the flipped filters (plan.transposed()),
        # whose GEMM (C, F*kh*kw) @ columns has the forward's good shape; other strides
        # multiply by w.T and sum the columns back (col2im).
        full = plan.transposed() if compute_dx else None
        if full is not None:
            nb = min(nb, self._chunk(n, full.k * full.cols_per_sample * dtype.itemsize, budget))
            w_flip = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]).reshape(plan.c, full.k)
            full_cols = _scratch.get("conv_dx_cols", full.k * nb * full.cols_per_sample, dtype)
            full_prod = _scratch.get("conv_dx_prod", plan.c * nb * full.cols_per_sample, dtype)
            full_work = full.workspace("conv_dx_pad", nb, dtype)
        elif compute_dx:
            w2t = w.reshape(f, k).T
            dcols_buf = _scratch.get("conv_dcols", k * nb * plan.cols_per_sample, dtype)
            dwork = plan.workspace("conv_dx_pad", nb, dtype)  # col2im sums (its own block)
        dx = np.empty(x.shape, dtype) if compute_dx else None
        cols_buf = _scratch.get("conv_cols", k * nb * plan.cols_per_sample, dtype)
        d_buf = _scratch.get("conv_dout", f * nb * plan.cols_per_sample, dtype)
        sums = _scratch.get("conv_db", nb * f, dtype).reshape(nb, f)
        work = plan.workspace("conv_pad", nb, dtype)
        transposed = k >= 64  # dw.T = cols @ d2.T is the faster GEMM for long columns (measured)
        acc = db = None
        for s, m in chunks(n, nb):
            d2, dout = plan.gradient_rows(dout_chunk, s, m, d_buf, sums, fill_rows)  # (F, m * columns per sample)
            part_db = np.sum(sums[:m], axis=0)
            cols = plan.columns(x[s : s + m], work, cols_buf)
            part = np.matmul(cols, d2.T) if transposed else np.matmul(d2, cols.T)
            if acc is None:
                acc, db = part, part_db
            else:
                acc += part
                db += part_db
            if dx is None:
                continue
            if full is not None:
                cols_dx = full.columns(dout, full_work, full_cols)
                prod = np.matmul(w_flip, cols_dx, out=full_prod[: plan.c * cols_dx.shape[1]].reshape(plan.c, -1))
                view = full.output_view(prod, m)
                _split(lambda a, z, s=s, view=view: np.copyto(dx[s + a : s + z], view[a:z]), m, _item_bytes(dx))
            else:
                dcols = np.matmul(w2t, d2, out=dcols_buf[: k * d2.shape[1]].reshape(k, d2.shape[1]))
                plan.add_columns(dx[s : s + m], dcols, dwork)
        assert acc is not None  # chunks() gives at least one chunk
        dw = np.ascontiguousarray(acc.T) if transposed else acc
        return dx, dw.reshape(w.shape), db

    # --- conv - relu [- max pool], fused chunk by chunk ---------------------------------
    def conv_relu_forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, geo: ConvGeometry, budget=None):
        if not _float(x, w, b):
            return super().conv_relu_forward(x, w, b, geo, budget)

        return self._conv_forward(x, w, b, ConvColumns(geo), budget, relu=True), ConvSaved(x=x)

    def conv_relu_backward(self, dout: np.ndarray, s: np.ndarray, w: np.ndarray, geo: ConvGeometry,
                           saved: ConvSaved, compute_dx: bool = True, budget=None):
        x = saved.x
        if x is None or not _float(dout, s, w, x) or dout.shape != s.shape:
            return super().conv_relu_backward(dout, s, w, geo, saved, compute_dx, budget)
        if _kernels_for(dout) is not None:
            dout, s = np.ascontiguousarray(dout), np.ascontiguousarray(s)
            it = _INT[dout.dtype.itemsize]

            def rows(start: int, m: int, d: np.ndarray):  # the ReLU backward of the chunk, into GEMM rows
                _launch("relu_rows", m, _item_bytes(s), dout[start : start + m].view(it), s[start : start + m],
                        d.view(it))

            return self._conv_backward(None, x, w, ConvColumns(geo), compute_dx, budget, rows)
        if not (dout.flags.c_contiguous and s.flags.c_contiguous):
            return super().conv_relu_backward(dout, s, w, geo, saved, compute_dx, budget)
        per = math.prod(s.shape[1:])

        def gradient(start: int, m: int):  # ReLU backward of samples start..start+m, into scratch
            ds = _scratch.get("cr_ds", m * per, s.dtype).reshape((m,) + s.shape[1:])
            return self._relu_backward_into(dout[start : start + m], s[start : start + m], ds)

        return self._conv_backward(gradient, x, w, ConvColumns(geo), compute_dx, budget)

    def conv_relu_pool_forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, geo: ConvGeometry,
                               pool: PoolGeometry, budget=None):
        if not _float(x, w, b) or pool.kernel == (1, 1):
            return super().conv_relu_pool_forward(x, w, b, geo, pool, budget)
        pooled = np.empty((x.shape[0],) + pool.out_shape[1:], x.dtype)
        rectified = self._conv_forward(x, w, b, ConvColumns(geo), budget, relu=True, pool=pool, pooled=pooled)
        return rectified, pooled, ConvSaved(x=x)

    def conv_relu_pool_backward(self, dout: np.ndarray, s: np.ndarray, out: np.ndarray, w: np.ndarray,
                                geo: ConvGeometry, pool: PoolGeometry, saved: ConvSaved, compute_dx: bool = True,
                                budget=None):
        x = saved.x
        if x is None or not _float(dout, s, out, w, x) or dout.shape != out.shape or pool.kernel == (1, 1):
            return super().conv_relu_pool_backward(dout, s, out, w, geo, pool, saved, compute_dx, budget)
        if _kernels_for(dout) is not None:
            def routed(start: int, m: int, rows: np.ndarray):  # pool and ReLU backward of the chunk, into GEMM rows
                end = start + m
                self._route(dout[start:end], s[start:end], out[start:end], pool, True, rows, rows=True)

            return self._conv_backward(None, x, w, ConvColumns(geo), compute_dx, budget, routed)
        if _has_nan(out):
            return super().conv_relu_pool_backward(dout, s, out, w, geo, pool, saved, compute_dx, budget)
        tiles = pool.tiles
        per, pooled_per = math.prod(s.shape[1:]), math.prod(out.shape[1:])

        def gradient(start: int, m: int):  # ReLU backward, then pool backward, of samples start..start+m
            # ReLU backward on the pooled level: each gradient goes to a position p of s holding its
            # window's maximum, s[p] = out[window], so where(s > 0, ., 0) after routing is
            # where(out > 0, dout, 0) before it, bit for bit, on a quarter of the elements (2x2 pool)
            end = start + m
            live = _scratch.get("crp_dout", m * pooled_per, s.dtype).reshape((m,) + out.shape[1:])
            self._relu_backward_into(dout[start:end], out[start:end], live)
            ds = _scratch.get("crp_ds", m * per, s.dtype).reshape((m,) + s.shape[1:])
            if not tiles:
                ds[...] = 0
            return self._max_pool_backward_into(live, s[start:end], out[start:end], pool, ds, tiles)

        return self._conv_backward(gradient, x, w, ConvColumns(geo), compute_dx, budget)

    # --- pooling ----------------------------------------------------------------
    def max_pool(self, x: np.ndarray, geo: PoolGeometry):
        if not _float(x) or geo.kernel == (1, 1):
            return super().max_pool(x, geo)
        out = np.empty((x.shape[0],) + geo.out_shape[1:], x.dtype)
        compiled = _kernels_for(x)
        if compiled is not None:
            _launch("max_pool", x.shape[0], _item_bytes(x), np.ascontiguousarray(x), *geo.kernel, *geo.stride, out)
            return out
        return self._max_pool_into(x, geo, out)

    @staticmethod
    def _max_pool_into(x: np.ndarray, geo: PoolGeometry, out: np.ndarray) -> np.ndarray:
        """Max over the kh*kw (>= 2) window offsets, row-major as the generic loop, into out."""
        first, second, *rest = geo.windows()

        def pool(a: int, z: int):  # samples a..z
            xs, o = x[a:z], out[a:z]
            np.maximum(xs[first], xs[second], out=o)
            for region in rest:
                np.maximum(o, xs[region], out=o)

        _split(pool, x.shape[0], _item_bytes(x))
        return out

    def max_pool_backward(self, dout: np.ndarray, x: np.ndarray, out: np.ndarray, geo: PoolGeometry):
        if not _float(dout, x, out) or dout.shape != out.shape or dout.size == 0:
            return super().max_pool_backward(dout, x, out, geo)
        if _kernels_for(dout) is not None:
            return self._route(dout, x, out, geo, False, np.empty(x.shape, dout.dtype))
        if _has_nan(out):
            return super().max_pool_backward(dout, x, out, geo)
        tiles = geo.tiles
        dx = np.empty(x.shape, dout.dtype) if tiles else np.zeros(x.shape, dout.dtype)
        return self._max_pool_backward_into(dout, x, out, geo, dx, tiles)

    @staticmethod
    def _route(dout: np.ndarray, x: np.ndarray, out: np.ndarray, geo: PoolGeometry, relu: bool,
               dx: np.ndarray, rows: bool = False) -> np.ndarray:
        """The compiled max-pool backward into the C-contiguous dx (N, C, H, W), or with ``rows``
        into GEMM rows (C, N, H, >= W) (zeros past W): the generic rule, NaN included, followed
        by the ReLU backward of x when ``relu``."""
        dout, x, out = (np.ascontiguousarray(a) for a in (dout, x, out))
        it = _INT[dout.dtype.itemsize]
        _launch("max_pool_backward", x.shape[0], _item_bytes(x), dout, x, out, *geo.kernel, *geo.stride, relu, rows,
                dx, dout.view(it), dx.view(it))
        return dx

    @staticmethod
    def _max_pool_backward_into(dout: np.ndarray, x: np.ndarray, out: np.ndarray, geo: PoolGeometry,
                                dx: np.ndarray, tiles: bool) -> np.ndarray:
        """Route dout to the first maximum of each window (no NaN in ``out``), into dx
        (zeros unless ``tiles``)."""
        _split(lambda a, z: NumpyOps._max_pool_backward_part(dout[a:z], x[a:z], out[a:z], geo, dx[a:z], tiles),
               dout.shape[0], _item_bytes(x))
        return dx

    @staticmethod
    def _max_pool_backward_part(dout: np.ndarray, x: np.ndarray, out: np.ndarray, geo: PoolGeometry,
                                dx: np.ndarray, tiles: bool) -> None:
        """:meth:`_max_pool_backward_into` of some samples, in one thread."""
        it = _INT[dout.dtype.itemsize]
        n, per = dout.shape[0], math.prod(dout.shape[1:])
        nb = max(1, min(n, BLOCK // max(per, 1)))  # samples per block: temporaries in cache
        offsets = geo.windows()
        bufs = {name: _scratch.get(f"pool_{name}", nb * per, dtype)
                for name, dtype in (("rest", it), ("sel", it), ("mask", it), ("hit", np.bool_))}
        for s in range(0, n, nb):
            m = min(nb, n - s)
            rest, sel, mask, hit = (bufs[k][: m * per].reshape((m,) + dout.shape[1:])
                                    for k in ("rest", "sel", "mask", "hit"))
            np.copyto(rest, dout[s : s + m].view(it))  # gradient bits not yet routed
            xs, outs, dxs = x[s : s + m], out[s : s + m], dx[s : s + m]
            for k, region in enumerate(offsets):
                np.equal(xs[region], outs, out=hit)
                np.negative(hit, dtype=it, out=mask)
                np.bitwise_and(rest, mask, out=sel)  # where(hit, rest, 0) by bits
                if tiles:
                    np.copyto(dxs[region].view(it), sel)
                else:
                    target = dxs[region]
                    np.add(target, sel.view(dout.dtype), out=target)
                if k + 1 < len(offsets):
                    rest ^= sel  # routed: only the first maximum of a window gets the gradient

    def avg_pool(self, x: np.ndarray, geo: PoolGeometry):
        if not _float(x) or geo.kernel == (1, 1):
            return super().avg_pool(x, geo)
        first, second, *rest = geo.windows()
        total = np.add(x[first], x[second])
        for region in rest:
            np.add(total, x[region], out=total)
        np.divide(total, geo.kernel[0] * geo.kernel[1], out=total)
        return total

    def avg_pool_backward(self, dout: np.ndarray, geo: PoolGeometry):
        if not _float(dout):
            return super().avg_pool_backward(dout, geo)
        share = dout / (geo.kernel[0] * geo.kernel[1])
        shape = (dout.shape[0],) + geo.x_shape[1:]
        tiles = geo.tiles
        dx = np.empty(shape, dout.dtype) if tiles else np.zeros(shape, dout.dtype)
        for region in geo.windows():
            target = dx[region]
            if tiles:
                target[...] = share
            else:
                np.add(target, share, out=target)
        return dx

    # --- GEMM shapes ------------------------------------------------------------------
    def matmul_tn(self, a: np.ndarray, b: np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == b.ndim == 2):
            return super().matmul_tn(a, b)
        return np.dot(a.T, b)  # BLAS even for an inner dimension of 1, where matmul loops

    # --- optimizer updates (in place, the generic order of operations) ------------------
    # Temporaries are reused scratch arrays, so an update allocates nothing; contiguous
    # arrays are split over the thread pool. (Cache-sized blocks were measured slower: two
    # ufunc calls per 64K elements cost more than the memory traffic they save.)
    def sgd(self, w: np.ndarray, dw: np.ndarray, lr: float):
        if not _updatable(w, dw):
            return super().sgd(w, dw, lr)

        def step(w, dw, tmp):
            np.multiply(dw, lr, out=tmp)
            np.subtract(w, tmp, out=w)

        _update(step, 1, w, dw)
        return w

    def sgd_momentum(self, w: np.ndarray, dw: np.ndarray, v: np.ndarray, lr: float, momentum: float):
        if not _updatable(w, dw, v):
            return super().sgd_momentum(w, dw, v, lr, momentum)

        def step(w, dw, v, tmp):
            np.multiply(dw, lr, out=tmp)
            v *= momentum
            v -= tmp
            w += v

        _update(step, 1, w, dw, v)
        return w

    def adam(self, w: np.ndarray, dw: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float, beta1: float,
             beta2: float, eps: float):
        if not _updatable(w, dw, m, v):
            return super().adam(w, dw, m, v, t, lr, beta1, beta2, eps)

        def step(w, dw, m, v, tmp, delta):
            np.multiply(dw, 1 - beta1, out=tmp)
            m *= beta1
            m += tmp
            np.multiply(dw, dw, out=tmp)
            tmp *= 1 - beta2
            v *= beta2
            v += tmp
            np.divide(m, 1 - beta1**t, out=delta)
            delta *= lr
            np.divide(v, 1 - beta2**t, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += eps
            delta /= tmp
            w -= delta

        _update(step, 2, w, dw, m, v)
        return w


def _update(step, temps: int, *arrays: np.ndarray) -> None:
    """``step(*arrays, *scratch)`` with ``temps`` scratch arrays shaped like the arrays; split
    over the thread pool into flat parts when every array is C-contiguous."""
    w = arrays[0]
    nbytes = w.size * w.itemsize
    if nbytes <= SMALL_TEMP_BYTES:  # fresh temporaries cost less than scratch bookkeeping here
        step(*arrays, *(np.empty(w.shape, w.dtype) for _ in range(temps)))
        return
    if nbytes < 2 * PART_BYTES or not all(a.flags.c_contiguous for a in arrays):
        step(*arrays, *_update_scratch(w, temps))
        return
    flat = [a.reshape(-1) for a in arrays]

    def part(a: int, z: int):
        step(*(f[a:z] for f in flat), *_update_scratch(flat[0][a:z], temps))

    _split(part, w.size, w.itemsize)


def _updatable(w: np.ndarray, *others: np.ndarray) -> bool:
    """An in-place update these versions handle: one float dtype and shape, and the
    parameter and its state arrays writeable (the gradient may be read-only)."""
    return (_float(w, *others) and all(a.shape == w.shape for a in others)
            and all(a.flags.writeable for a in (w, *others[1:])))


def _update_scratch(w: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` scratch arrays shaped like ``w`` (contents undefined; arrays even for a
    0-d ``w``, so that ufuncs can write into them)."""
    buf = _scratch.get("update", count * w.size, w.dtype).reshape(count, *w.shape)
    return [buf[i, ...] for i in range(count)]
