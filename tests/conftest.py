"""Shared fixtures: one test body, every available backend.

``backend`` runs a test on ``numpy`` and ``strict`` always, and on ``cupy`` (marked
``gpu``) when a CUDA device is usable. ``put`` moves a NumPy array onto the backend
under test; ``host`` brings any array back as NumPy.
"""

import numpy as np
import pytest

import gpunet
from gpunet.backend import cupy_status

BACKENDS = [
    "numpy",
    "strict",
    pytest.param("cupy", marks=pytest.mark.gpu),
]


def pytest_collection_modifyitems(config, items):
    cupy, reason = cupy_status()
    if cupy is not None:
        return
    skip = pytest.mark.skip(reason=f"no usable CUDA device: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Name of the backend under test; new arrays are created there for the test."""
    with gpunet.use_backend(request.param):
        yield request.param


@pytest.fixture
def put(backend):
    """``put(np_array, dtype=None)``: a copy of a NumPy array on the backend under test."""

    def _put(a, dtype=None):
        with gpunet.use_backend(backend):
            return gpunet.asarray(np.array(a, copy=True), dtype=dtype)

    return _put


@pytest.fixture
def host():
    return gpunet.to_numpy


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
