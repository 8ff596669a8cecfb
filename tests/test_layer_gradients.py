"""Numeric gradient checks (float64, central differences) for every layer on every backend,
plus float32-vs-float64 agreement, no mutation of inputs or caches, and non-contiguous inputs."""

import numpy as np
import pytest
from layer_cases import CASE_IDS, CASES
from tolerances import GRAD_REL_ERROR, assert_close

from gpunet.gradcheck import rel_error


def _run(case, put, inputs, dtype=None):
    dev = [put(a, dtype) for a in inputs]
    out, cache = case.forward(*dev)
    return dev, out, cache


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_match_numeric(case, put, host):
    inputs, grads, numerics = case.gradients(put, host)
    assert len(grads) == len(case.wrt)
    for k, g, numeric in zip(case.wrt, grads, numerics):
        assert host(g).shape == inputs[k].shape
        if k in case.zero:
            assert np.abs(host(g)).max() < 1e-10 and np.abs(numeric).max() < 1e-8
            continue
        err = rel_error(g, numeric)
        assert err <= GRAD_REL_ERROR, f"{case.name}: gradient of input {k}: rel_error {err:.2e}"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float32_matches_float64(case, put, host):
    rng = np.random.default_rng(3)
    inputs = case.make(rng)
    results = {}
    for dtype in ("float64", "float32"):
        dev, out, cache = _run(case, put, inputs, dtype)
        dout = put(np.linspace(-1, 1, host(out).size).reshape(host(out).shape), dtype)
        grads = case.backward(dout, cache)
        assert str(out.dtype).endswith(dtype) and all(str(g.dtype).endswith(dtype) for g in grads)
        results[dtype] = [host(out)] + [host(g) for g in grads]
    for a32, a64 in zip(results["float32"], results["float64"]):
        assert_close(a32, a64, dtype="float32")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_inputs_and_cache_not_mutated(case, put, host):
    rng = np.random.default_rng(4)
    inputs = case.make(rng)
    dev, out, cache = _run(case, put, inputs)
    before = [host(a).copy() for a in dev]
    cache_before = [host(a).copy() for a in _arrays_in(cache)]
    case.backward(put(np.ones(host(out).shape)), cache)
    for a, b in zip(dev, before):
        np.testing.assert_array_equal(host(a), b)
    for a, b in zip(_arrays_in(cache), cache_before):
        np.testing.assert_array_equal(host(a), b)


def _arrays_in(obj):
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in _arrays_in(item)]
    if isinstance(obj, dict):
        return [a for item in obj.values() for a in _arrays_in(item)]
    return [obj] if hasattr(obj, "shape") and hasattr(obj, "dtype") else []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_non_contiguous_inputs_give_same_result(case, put, host):
    rng = np.random.default_rng(5)
    inputs = case.make(rng)
    _, out, cache = _run(case, put, inputs)
    dout_host = rng.standard_normal(host(out).shape)
    expected = [host(out)] + [host(g) for g in case.backward(put(dout_host), cache)]
    # every input (and dout) as a strided view into a larger array
    strided = [put(np.stack([a, -a], axis=-1))[..., 0] for a in inputs]
    out2, cache2 = case.forward(*strided)
    dout2 = put(np.stack([dout_host, dout_host], axis=-1))[..., 1]
    got = [host(out2)] + [host(g) for g in case.backward(dout2, cache2)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
