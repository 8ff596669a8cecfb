"""On a CUDA device (``pytest -m gpu``; skipped with the reason otherwise).

The layer/loss/optimizer parity suite runs on CuPy through the ``backend`` fixture of
tests/conftest.py; this module adds what is specific to the kernels: each CupyOps
kernel against the generic code on the device and against NumPy (float16/32/64, special
values), sizes of many blocks with a partial last one, 64-bit indexing (> 2**31
elements, when the device has the memory), ``cached_code`` equal to the source the
offline NVRTC check compiled, and one Solver epoch without hidden syncs.
"""

import numpy as np
import offline
import pytest
from tolerances import TOL

from gpunet.backend import cupy_status
from gpunet.backend.geometry import ConvGeometry
from gpunet.backend.ops import Ops
from gpunet.cuda import conv, optim
from gpunet.cuda.lazy import KERNELS

pytestmark = pytest.mark.gpu

DTYPES = ["float16", "float32", "float64"]


@pytest.fixture(scope="module")
def cp():
    cupy, reason = cupy_status()
    if cupy is None:
        pytest.skip(f"no usable CUDA device: {reason}")
    return cupy


@pytest.fixture(scope="module")
def ops(cp):
    from gpunet.backend import get_ops

    return get_ops(cp)


def _close(got, want, dtype, signed_zeros=False, what=""):
    """Device result against a reference (NumPy or device); subnormals may flush to zero
    on the GPU (CuPy compiles with -ftz=true), which the absolute tolerance absorbs."""
    import cupy

    got = cupy.asnumpy(got)
    want = cupy.asnumpy(want) if not isinstance(want, np.ndarray) else want
    offline.assert_matches(got, want.astype(got.dtype, copy=False), TOL[np.dtype(dtype)],
                           signed_zeros, what)


def _generic_numpy(method, *args):
    with np.errstate(all="ignore"):
        return getattr(Ops(np), method)(*args)


# --- every kernel against the generic code, on the device and against NumPy ------------

ELEMENTWISE = [("sigmoid", 1), ("sigmoid_backward", 2), ("relu_backward", 2),
               ("leaky_relu_backward", 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method,n_arrays", ELEMENTWISE)
def test_activation_kernels(cp, ops, rng, dtype, method, n_arrays):
    host = offline.value_grid(dtype, rng, n_arrays)
    extra = (0.01,) if method == "leaky_relu_backward" else ()
    dev = [cp.asarray(a) for a in host]
    got = getattr(ops, method)(*dev, *extra)
    _close(got, getattr(Ops(cp), method)(*dev, *extra), dtype, what=f"{method} vs generic cupy")
    _close(got, _generic_numpy(method, *host, *extra), dtype, what=f"{method} vs numpy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_kernel(cp, ops, rng, dtype):
    s = offline.special_values(dtype)
    x, b = np.repeat(s[:, None], s.size, axis=1), s.copy()
    got = ops.bias_relu(cp.asarray(x), cp.asarray(b))
    _close(got, _generic_numpy("bias_relu", x, b), dtype, what="bias_relu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", ["sgd_momentum", "adam"])
def test_optimizer_kernels_update_in_place(cp, ops, rng, dtype, rule):
    w, dw, v = offline.value_grid(dtype, rng, 3)
    args = (w, dw, v, 1e-2, 0.9) if rule == "sgd_momentum" else (
        w, dw, v.copy(), np.abs(v), 3, 1e-3, 0.9, 0.999, 1e-8)
    dev = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    ref = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(ops, rule)(*dev)
    assert out is dev[0]
    _generic_numpy(rule, *ref)
    for d, r in zip(dev, ref):
        if isinstance(r, np.ndarray):
            _close(d, r, dtype, what=rule)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,kernel,stride,pad,dilation", [
    ((2, 3, 7, 6), (3, 2), (2, 3), (1, 2), (1, 1)),
    ((2, 2, 6, 7), (5, 3), (3, 3), (2, 1), (1, 1)),
    ((2, 3, 11, 10), (3, 3), (2, 3), (1, 2), (2, 1)),  # dilated, floored
    ((64, 16, 32, 32), (3, 3), (1, 1), (1, 1), (1, 1)),  # 9.4M column elements: many blocks
])
def test_conv_kernels(cp, ops, rng, dtype, x_shape, kernel, stride, pad, dilation):
    geo = ConvGeometry(x_shape, (1, x_shape[1], *kernel), stride, pad, dilation)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = ops.im2col(cp.asarray(x), geo)
    _close(cols, Ops(cp).im2col(cp.asarray(x), geo), dtype, what="im2col")
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = ops.col2im(cp.asarray(c), geo)
    _close(back, Ops(cp).col2im(cp.asarray(c), geo), dtype, what="col2im")
    if x.size < 10_000:
        _close(back, _generic_numpy("col2im", c, geo), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform(cp, ops, dtype):
    like = cp.zeros(1, dtype=dtype)
    u = ops.uniform((1000, 3), like=like)  # drawn on the device
    assert u.dtype == np.dtype(dtype) and u.shape == (1000, 3)
    host = cp.asnumpy(u)
    assert host.min() >= 0 and host.max() < 1 and 0.4 < host.mean() < 0.6
    seeded = ops.uniform((5,), like=like, seed=7)  # host PCG64: the same on every backend
    np.testing.assert_array_equal(cp.asnumpy(seeded), Ops(np).uniform((5,), np.zeros(1, dtype), 7))


# --- launch geometry ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 127, 128, 129, 128 * 4096 + 77, 2**24 + 3])
def test_sizes_of_many_blocks(cp, ops, n):
    x = cp.linspace(-8, 8, n, dtype=cp.float32)
    y = ops.sigmoid(x)
    _close(y, Ops(cp).sigmoid(x), "float32", what=f"sigmoid n={n}")
    dx = ops.relu_backward(y - 0.5, x)
    _close(dx, Ops(cp).relu_backward(y - 0.5, x), "float32", what=f"relu_backward n={n}")


@pytest.mark.slow
def test_64_bit_indexing(cp, ops):
    n = 2**31 + 5  # float16: 4 GiB in, 4 GiB out
    free, _ = cp.cuda.runtime.memGetInfo()
    if free < 9 * 2**30:
        pytest.skip(f"needs 9 GiB of free device memory, {free / 2**30:.1f} GiB free")
    x = cp.zeros(n, dtype=cp.float16)
    probe = np.array([0, 2**31 - 1, 2**31, 2**31 + 1, n - 1])
    values = np.array([1.0, -2.0, 3.0, -4.0, 5.0], np.float16)
    x[cp.asarray(probe)] = cp.asarray(values)
    y = ops.sigmoid(x)
    _close(y[cp.asarray(probe)], _generic_numpy("sigmoid", values), "float16", what="64-bit")
    del x, y


# --- the code that runs is the code compiled offline -------------------------------------


def _canonical_call(cp, name, dtype):
    """Launch kernel ``name`` once on contiguous arrays; returns the dtypes of its array
    arguments (the key of ``kernel.cached_codes``)."""
    d = np.dtype(dtype)
    a = cp.linspace(-1, 1, 1000, dtype=d)
    b = cp.linspace(1, -1, 1000, dtype=d)
    geo = ConvGeometry((2, 3, 5, 5), (1, 3, 3, 3), (1, 1), (1, 1))
    if name == "gpunet_im2col":
        conv.im2col(cp, cp.ones((2, 3, 5, 5), d), geo)
        return (d, d)
    if name == "gpunet_col2im":
        conv.col2im(cp, cp.ones((27, 50), d), geo)
        return (d, d)
    if name == "gpunet_sgd_momentum":
        optim.sgd_momentum(a, b, a.copy(), 0.1, 0.9)
        return (d, d, d)
    if name == "gpunet_adam":
        optim.adam(a, b, a.copy(), cp.abs(b), 2, 1e-3, 0.9, 0.999, 1e-8)
        return (d, d, d, d)
    lazy = KERNELS[name]
    n_arrays = len([p for p in lazy.get().in_params if p.name not in lazy.scalars])
    scalars = [0.1] * len(lazy.scalars)
    lazy(*[a, b][:n_arrays], *scalars)
    return (d,) * (n_arrays + 1)


CODE_CASES = [(k.name, d) for k in sorted(KERNELS.values(), key=lambda k: k.name)
              for d in k.dtypes]


@pytest.mark.parametrize("name,dtype", CODE_CASES, ids=["-".join(c) for c in CODE_CASES])
def test_cached_code_is_the_offline_source(cp, monkeypatch, name, dtype):
    import warnings

    lazy = KERNELS[name]
    monkeypatch.setattr(lazy, "_kernel", None)  # a fresh kernel object: only this call cached
    key = _canonical_call(cp, name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = lazy.get().cached_codes
    assert key in codes, f"no cached code for {key}; cached: {list(codes)}"
    assert codes[key] == offline.cuda_source(lazy, dtype, "contiguous"), (
        "CuPy compiled different source than tests/cuda/test_nvrtc.py checks offline "
        "(update the layout assumptions in tests/cuda/offline.py:_arginfos)")


# --- a Solver epoch without hidden synchronisation ----------------------------------------


@pytest.mark.parametrize("model_name,update_rule", [("TwoLayerNet", "adam"),
                                                     ("ThreeLayerConvNet", "sgd_momentum")])
def test_solver_epoch_without_hidden_syncs(cp, monkeypatch, model_name, update_rule):
    """One epoch under ``cupyx.allow_synchronize(False)``; only the training package's
    read-backs (losses, accuracy, the NaN and label checks) may synchronise."""
    import cupyx

    import gpunet
    from gpunet import models
    from gpunet.solver import Solver

    rng = np.random.default_rng(0)
    shape = (3, 8, 8)
    X = rng.standard_normal((64,) + shape).astype(np.float32)
    y = rng.integers(0, 10, 64)
    with gpunet.use_backend("cupy"):
        if model_name == "TwoLayerNet":
            model = models.TwoLayerNet(input_dim=int(np.prod(shape)), hidden_dim=32, seed=0)
        else:
            model = models.ThreeLayerConvNet(input_dim=shape, num_filters=4, filter_size=3,
                                             hidden_dim=16, seed=0)
        data = {k: gpunet.asarray(v) for k, v in
                dict(X_train=X, y_train=y, X_val=X[:16], y_val=y[:16]).items()}
    solver = Solver(model, data, update_rule=update_rule, batch_size=16, num_epochs=1,
                    print_every=2, verbose=False, optim_config={"learning_rate": 1e-3})
    # Every read-back of the training package goes through device.to_numpy (losses, accuracy
    # and NaN counts); the label check through losses.to_numpy. Nothing else may synchronise.
    from gpunet import losses
    from gpunet.training import device

    for module in (device, losses):
        def allowed(*args, _original=module.to_numpy, **kwargs):
            with cupyx.allow_synchronize(True):
                return _original(*args, **kwargs)

        monkeypatch.setattr(module, "to_numpy", allowed)
    with cupyx.allow_synchronize(False):
        solver.train()
    assert len(solver.history["loss"]) == 4 and np.all(np.isfinite(solver.history["loss"]))
