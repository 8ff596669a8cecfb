"""Kernels are described at import, built once on first use, and never compiled at import."""

import subprocess
import sys
import threading
import warnings

import offline
import pytest

from gpunet.backend.cupy_ops import CupyOps
from gpunet.backend.ops import Ops
from gpunet.cuda.lazy import FLOATS, KERNELS, all_kernels

PRIMITIVES = ["sigmoid", "sigmoid_backward", "relu_backward", "leaky_relu_backward", "bias_relu",
              "im2col", "col2im", "sgd_momentum", "adam", "uniform"]


def test_importing_the_kernels_imports_no_cupy():
    code = ("import sys, gpunet, gpunet.cuda, gpunet.backend.cupy_ops\n"
            "from gpunet.cuda.lazy import all_kernels\n"
            "from gpunet.backend import get_ops\n"
            "import numpy\n"
            "assert len(all_kernels()) == 9 and get_ops(numpy).name == 'numpy'\n"
            "print('cupy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_every_ops_primitive_has_a_cupy_override():
    for name in PRIMITIVES:
        assert hasattr(Ops, name), f"Ops lost {name}"
        assert name in vars(CupyOps), f"CupyOps does not override {name}"


def test_registry():
    kernels = all_kernels()
    assert len({k.name for k in kernels}) == len(kernels) == len(KERNELS) == 9
    for k in kernels:
        assert k.__doc__ and set(k.dtypes) <= set(FLOATS)
    with pytest.raises(ValueError, match="already defined"):
        type(kernels[0])(kernels[0].name, "T x", "T y", "y = x", doc="duplicate")


def test_kernel_object_is_built_once_and_compiles_nothing():
    cupy = offline.require_cupy()
    lazy = KERNELS["gpunet_sigmoid_forward"]
    lazy._kernel = None  # start from "never used" (the object is rebuilt the same way)
    got = []
    threads = [threading.Thread(target=lambda: got.append(lazy.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(g is got[0] for g in got) and lazy.get() is got[0]
    assert isinstance(got[0], cupy.ElementwiseKernel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert got[0].cached_codes == {}, "creating the kernel object compiled something"


def test_get_ops_of_cupy_is_cupyops_without_a_device():
    cupy = offline.require_cupy()
    from gpunet.backend import get_ops

    ops = get_ops(cupy)
    assert isinstance(ops, CupyOps) and get_ops(cupy) is ops and ops.xp is cupy
