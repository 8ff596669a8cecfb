"""The generic Ops' column budget (``gpunet/backend/ops.py``): how many samples one chunk
holds, when the forward pass keeps the columns and when the input, and that uneven chunks
give the readable loops' values. Written against the mutants of ops.py that survived the
layer tests (``scripts/mutation.sh ops``)."""

import numpy as np
import pytest

from gpunet.backend.geometry import ConvGeometry
from gpunet.backend.ops import Ops, chunks
from gpunet.reference import conv_backward_naive, conv_forward_naive

GENERIC = Ops(np)


@pytest.mark.parametrize(
    "n,sample_bytes,budget,expected",
    [
        (10, 100, 250, 2),  # floor(budget / bytes per sample)
        (10, 100, 99, 1),  # at least one sample, even over budget
        (10, 1, 5, 5),
        (3, 100, 10**9, 3),  # never more than the batch
        (10, 100, None, 10),  # no budget: the whole batch
        (0, 100, None, 1),  # an empty batch still has one (empty) chunk
    ],
)
def test_conv_chunk_is_the_budget_over_the_bytes_per_sample(n, sample_bytes, budget, expected):
    assert Ops.conv_chunk(n, sample_bytes, budget) == expected


def test_chunks_cover_the_batch_once():
    assert chunks(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert chunks(6, 3) == [(0, 3), (3, 3)]
    assert chunks(0, 3) == [(0, 0)]


def _problem(n):
    rng = np.random.default_rng(n)
    x, w, b = rng.standard_normal((n, 2, 5, 6)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    param = {"stride": (2, 1), "pad": 1}
    geo = ConvGeometry(x.shape, w.shape, (2, 1), (1, 1))
    return x, w, b, param, geo


@pytest.mark.parametrize("n,fit", [(3, 3), (3, 2), (3, 1), (4, 2)])
def test_split_convolution_keeps_x_and_matches_the_loops(n, fit):
    # a budget of exactly `fit` samples' columns: chunks of `fit` samples; the columns are
    # kept only when the whole batch fits
    x, w, b, param, geo = _problem(n)
    sample_bytes = geo.rows * geo.out_hw[0] * geo.out_hw[1] * x.dtype.itemsize
    out, saved = GENERIC.conv2d_forward(x, w, b, geo, fit * sample_bytes)
    expected, cache = conv_forward_naive(x, w, b, param)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    if fit >= n:
        assert saved.cols is not None and saved.x is None
    else:
        assert saved.cols is None and saved.x is x
    dout = np.random.default_rng(0).standard_normal(out.shape)
    dx, dw, db = GENERIC.conv2d_backward(dout, w, geo, saved, True, fit * sample_bytes)
    for got, want in zip((dx, dw, db), conv_backward_naive(dout, cache), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    no_dx = GENERIC.conv2d_backward(dout, w, geo, saved, False, fit * sample_bytes)
    assert no_dx[0] is None
    np.testing.assert_allclose(no_dx[1], dw, rtol=1e-12, atol=1e-12)
