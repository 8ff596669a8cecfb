"""Loop-based references, written from the definitions and independent of gpunet:
cross-correlation with zero padding, and max/average pooling (max ties go to the first
maximum in row-major window order)."""

import numpy as np


def conv_forward(x, w, b, stride, pad):
    (sh, sw), (ph, pw) = stride, pad
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    patch = xp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw]
                    out[i, k, r, s] = np.sum(patch * w[k]) + b[k]
    return out


def conv_backward(dout, x, w, stride, pad):
    (sh, sw), (ph, pw) = stride, pad
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    oh, ow = dout.shape[2:]
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    g = dout[i, k, r, s]
                    dxp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw] += g * w[k]
                    dw[k] += g * xp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw]
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
        out[i, k, r, s] = x[win].max()
    return out


def max_pool_backward(dout, x, kh, kw, sh, sw):
    dx = np.zeros_like(x)
    for i, k, r, s, win in _windows(x, kh, kw, sh, sw):
        a, b = np.unravel_index(np.argmax(x[win]), (kh, kw))  # first maximum, row-major
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
