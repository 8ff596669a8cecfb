"""The thread pool of the NumPy backend (``gpunet.backend.threads``): every pass it splits
gives bit for bit what one thread gives, and ``parallel`` covers its range exactly once,
raises what a part raises and never nests.

The splitting threshold (``numpy_ops.PART_BYTES``) is lowered to one byte so that the
small test shapes are split as a training step's large arrays are.
"""

import threading

import numpy as np
import pytest

from gpunet.backend import numpy_ops, threads
from gpunet.backend.geometry import ConvGeometry, PoolGeometry
from gpunet.backend.numpy_ops import NumpyOps

FAST = NumpyOps(np)
eq = np.testing.assert_array_equal


@pytest.fixture
def pool_size():
    """Set the pool size for a test; restored afterwards."""
    old = threads.get_threads()
    yield threads.set_threads
    threads.set_threads(old)


@pytest.fixture
def split_everything(monkeypatch):
    monkeypatch.setattr(numpy_ops, "PART_BYTES", 1)


def _both(run, pool_size):
    """run() with one thread and with three; both results (tuples of arrays)."""
    results = []
    for n in (1, 3):
        pool_size(n)
        results.append([None if a is None else np.array(a, copy=True) for a in run()])
    return results


def _assert_same(results):
    for one, many in zip(*results):
        if one is None:
            assert many is None
        else:
            eq(many, one)
            assert many.dtype == one.dtype


CONVS = [  # x shape, w shape, stride, pad, dilation: padded rows (stride 1), strided im2col, col2im dx
    ((5, 3, 9, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((4, 2, 10, 9), (3, 2, 3, 2), (2, 3), (1, 2), (1, 1)),
    ((3, 2, 7, 7), (5, 2, 2, 2), (1, 1), (3, 3), (2, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("budget", [None, 1])
def test_threaded_convolutions_are_bit_identical(dtype, conv, budget, pool_size, split_everything):
    x_shape, w_shape, stride, pad, dilation = conv
    geo = ConvGeometry(x_shape, w_shape, stride, pad, dilation)
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal(x_shape) * 2).astype(dtype) / 2  # ReLU kinks and pooling ties
    w, b = rng.standard_normal(w_shape).astype(dtype), rng.standard_normal(w_shape[0]).astype(dtype)
    dout = rng.standard_normal(geo.out_shape).astype(dtype)
    pool = PoolGeometry(geo.out_shape, (2, 2), (2, 2))
    dpool = rng.standard_normal(pool.out_shape).astype(dtype)

    def run():
        out, saved = FAST.conv2d_forward(x, w, b, geo, budget)
        s, saved_r = FAST.conv_relu_forward(x, w, b, geo, budget)
        sp, pooled, saved_p = FAST.conv_relu_pool_forward(x, w, b, geo, pool, budget)
        return (out, *FAST.conv2d_backward(dout, w, geo, saved, True, budget),
                s, *FAST.conv_relu_backward(dout, s, w, geo, saved_r, True, budget),
                sp, pooled, *FAST.conv_relu_pool_backward(dpool, sp, pooled, w, geo, pool, saved_p, True, budget),
                FAST.im2col(x, geo), FAST.col2im(FAST.im2col(x, geo), geo))

    _assert_same(_both(run, pool_size))


POOLS = [((6, 3, 8, 8), (2, 2), (2, 2)), ((5, 2, 9, 7), (3, 2), (2, 1)), ((4, 3, 9, 9), (2, 2), (2, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", POOLS)
def test_threaded_pooling_and_relu_are_bit_identical(dtype, geom, pool_size, split_everything):
    x_shape, kernel, stride = geom
    geo = PoolGeometry(x_shape, kernel, stride)
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal(x_shape)).astype(dtype)  # many tied maxima
    dy = rng.standard_normal(x_shape).astype(dtype)
    dout = rng.standard_normal(geo.out_shape).astype(dtype)
    big = rng.standard_normal(3 * numpy_ops.BLOCK + 5).astype(dtype)  # several blocks of the blockwise ReLU
    dbig = rng.standard_normal(big.shape).astype(dtype)

    def run():
        out = FAST.max_pool(x, geo)
        relu = FAST.relu_(x.copy())
        return (out, FAST.max_pool_backward(dout, x, out, geo), relu, FAST.relu_backward(dy, x),
                FAST.relu_backward_(dy.copy(), x), FAST.relu_backward(dbig, big), FAST.relu_(big.copy()))

    _assert_same(_both(run, pool_size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(301, 500), (7,), ()])
def test_threaded_optimizer_updates_are_bit_identical(dtype, shape, pool_size, split_everything):
    rng = np.random.default_rng(2)
    w0, m0, dw = (np.asarray(rng.standard_normal(shape), dtype) for _ in range(3))
    v0 = np.asarray(rng.random(shape), dtype)

    def run():
        w = w0.copy()
        FAST.sgd(w, dw, 0.1)
        w2, v2 = w0.copy(), m0.copy()
        FAST.sgd_momentum(w2, dw, v2, 0.1, 0.9)
        w3, m3, v3 = w0.copy(), m0.copy(), v0.copy()
        for t in (1, 2):
            FAST.adam(w3, dw, m3, v3, t, 1e-3, 0.9, 0.999, 1e-8)
        return w, w2, v2, w3, m3, v3

    _assert_same(_both(run, pool_size))


# --- the pool itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,min_items", [(0, 1), (1, 1), (10, 1), (10, 4), (1000, 7)])
def test_parallel_covers_the_range_once(n, min_items, pool_size):
    pool_size(3)
    seen, lock = [], threading.Lock()

    def part(a, z):
        with lock:
            seen.append((a, z))

    threads.parallel(part, n, min_items)
    covered = sorted(i for a, z in seen for i in range(a, z))
    assert covered == list(range(n))
    assert len(seen) == threads.parts(n, min_items) and all(z - a >= min(min_items, n) for a, z in seen)


def test_parallel_raises_what_a_part_raises_after_all_parts_ended(pool_size):
    pool_size(2)
    finished = []

    def part(a, z):
        if a > 0:
            raise KeyError("second part")
        finished.append(a)

    with pytest.raises(KeyError, match="second part"):
        threads.parallel(part, 10)
    assert finished == [0]


def test_nested_parallel_runs_in_the_calling_thread(pool_size):
    pool_size(2)
    inner = []

    def part(a, z):
        threads.parallel(lambda b, y: inner.append((threading.get_ident(), b, y)), 8)

    threads.parallel(part, 2)
    assert sorted((b, y) for _, b, y in inner) == [(0, 8), (0, 8)]  # each outer part ran its inner range whole


def test_one_thread_runs_everything_in_the_caller(pool_size):
    pool_size(1)
    idents = []
    threads.parallel(lambda a, z: idents.append(threading.get_ident()), 100)
    assert idents == [threading.get_ident()]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_threads_refuses_nonsense(bad, pool_size):
    with pytest.raises(ValueError, match="set_threads: n must be an int >= 1"):
        threads.set_threads(bad)


@pytest.mark.parametrize("env,expected", [({"GPUNET_THREADS": "3"}, 3), ({"GPUNET_THREADS": " 2 "}, 2),
                                          ({"GPUNET_THREADS": "1"}, 1), ({}, 1), ({"OPENBLAS_NUM_THREADS": "2"}, 1)])
def test_size_from_the_environment(monkeypatch, env, expected):
    """Off unless GPUNET_THREADS asks (BLAS's own thread count does not turn it on)."""
    for var in ("GPUNET_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(threads, "_threads", None)  # not read yet
    assert threads.get_threads() == expected


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_in_the_environment_is_reported(monkeypatch, value):
    monkeypatch.setenv("GPUNET_THREADS", value)
    monkeypatch.setattr(threads, "_threads", None)
    with pytest.raises(ValueError, match=f"GPUNET_THREADS must be an int >= 1.*{value!r}"):
        threads.get_threads()
