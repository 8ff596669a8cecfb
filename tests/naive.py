"""Loop-based references, written from the definitions and independent of gpunet:
cross-correlation with zero padding and dilation, and max/average pooling. Output sizes
are floored (integer division, as PyTorch and the CS231n loops): input rows and columns
that no window reaches get zero gradient. Max pooling follows PyTorch: ties go to the
first maximum in row-major window order; a window holding NaN pools to NaN and sends
its gradient to its last NaN."""

import numpy as np


def _patch(i, r, s, kh, kw, stride, dilation):
    """Index of the (C, kh, kw) elements of the padded input that output (r, s) of
    sample i sees: kh x kw taps, dilation apart."""
    (sh, sw), (dh, dw) = stride, dilation
    return i, slice(None), slice(r * sh, r * sh + dh * (kh - 1) + 1, dh), slice(s * sw, s * sw + dw * (kw - 1) + 1, dw)


def conv_forward(x, w, b, stride, pad, dilation=(1, 1)):
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    out[i, k, r, s] = np.sum(xp[_patch(i, r, s, kh, kw, stride, dilation)] * w[k]) + b[k]
    return out


def conv_backward(dout, x, w, stride, pad, dilation=(1, 1)):
    (ph, pw) = pad
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    oh, ow = dout.shape[2:]
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    patch = _patch(i, r, s, kh, kw, stride, dilation)
                    dxp[patch] += dout[i, k, r, s] * w[k]
                    dw[k] += dout[i, k, r, s] * xp[patch]
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, ph : ph + h, pw : pw + wd], dw, db


def _windows(x, kh, kw, sh, sw):
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    for i in range(n):
        for k in range(c):
            for r in range(oh):
                for s in range(ow):
                    yield i, k, r, s, (i, k, slice(r * sh, r * sh + kh), slice(s * sw, s * sw + kw))


def pool_out_shape(x, kh, kw, sh, sw):
    n, c, h, w = x.shape
    return n, c, (h - kh) // sh + 1, (w - kw) // sw + 1


def max_pool_forward(x, kh, kw, sh, sw):
    out = np.zeros(pool_out_shape(x, kh, kw, sh, sw))
    for i, k, r, s, win in _windows(x, kh, kw, sh, sw):
        out[i, k, r, s] = x[win].max()  # NaN if the window holds one
    return out


def _chosen(window):
    """(row, column) of the window element that gets the gradient: the last NaN if the
    window holds one, else the first maximum in row-major order."""
    flat = window.reshape(-1)
    nans = np.flatnonzero(np.isnan(flat))
    return np.unravel_index(nans[-1] if nans.size else np.argmax(flat), window.shape)


def max_pool_backward(dout, x, kh, kw, sh, sw):
    dx = np.zeros_like(x)
    for i, k, r, s, win in _windows(x, kh, kw, sh, sw):
        a, b = _chosen(x[win])
        dx[i, k, win[2].start + a, win[3].start + b] += dout[i, k, r, s]
    return dx


def avg_pool_forward(x, kh, kw, sh, sw):
    out = np.zeros(pool_out_shape(x, kh, kw, sh, sw))
    for i, k, r, s, win in _windows(x, kh, kw, sh, sw):
        out[i, k, r, s] = x[win].mean()
    return out


def avg_pool_backward(dout, x, kh, kw, sh, sw):
    dx = np.zeros_like(x)
    for i, k, r, s, win in _windows(x, kh, kw, sh, sw):
        dx[win] += dout[i, k, r, s] / (kh * kw)
    return dx
