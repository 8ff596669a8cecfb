"""gpunet.data.batches.rows: the one row-gathering helper of BatchIterator, the Solver's
steps and its evaluation, against NumPy indexing, on the numpy and strict backends."""

import numpy as np
import pytest

import gpunet
import gpunet.data.batches as batches
from gpunet.backend import backend_of
from gpunet.data.batches import rows

A = np.arange(42, dtype=np.float32).reshape(14, 3)
INDEXES = {"slice": slice(3, 9), "gather": np.array([5, 0, 13, 5, 2]),
           "empty": np.array([], dtype=np.int64)}


def on(backend, a):
    with gpunet.use_backend(backend):
        return gpunet.asarray(a)


@pytest.mark.parametrize("index", INDEXES)
@pytest.mark.parametrize("source", ["numpy", "strict"])
@pytest.mark.parametrize("target", ["numpy", "strict"])
def test_rows_are_numpy_indexing_placed_next_to_like(source, target, index):
    idx = INDEXES[index]
    like = on(target, np.zeros(1, np.float32))
    out = rows(on(source, A), idx, like)
    assert backend_of(out) == target
    if target == "strict":
        assert out.device == like.device
    host = gpunet.to_numpy(out)
    np.testing.assert_array_equal(host, A[idx])
    assert host.dtype == A.dtype


def test_host_slice_for_host_parameters_is_a_view():
    out = rows(A, slice(2, 6), np.zeros(1))
    assert np.shares_memory(out, A)


def test_device_data_is_gathered_on_the_device(monkeypatch):
    """Data and parameters on the same device: no round trip through the host."""
    def no_host(*args, **kwargs):
        raise AssertionError("rows went through the host")

    monkeypatch.setattr(batches, "to_numpy", no_host)
    a, like = on("strict", A), on("strict", np.zeros(1, np.float32))
    out = rows(a, np.array([4, 1]), like)
    assert backend_of(out) == "strict" and out.device == like.device
    monkeypatch.undo()
    np.testing.assert_array_equal(gpunet.to_numpy(out), A[[4, 1]])


@pytest.mark.parametrize("index", INDEXES)
def test_without_like_rows_go_to_the_current_backend_as_dtype(backend, index):
    out = rows(A, INDEXES[index], dtype="float64")
    assert backend_of(out) == backend
    host = gpunet.to_numpy(out)
    np.testing.assert_array_equal(host, A[INDEXES[index]].astype(np.float64))
    assert host.dtype == np.float64
