"""Every CUDA kernel compiles with NVRTC, without a device.

The source is exactly what CuPy generates for the kernel object (private code
generator, version pinned by the ``kernels`` extra), with CuPy's headers and compile
options, at an explicit architecture (sm_80): for each dtype the kernel supports, in
the common layout (contiguous, 1-D after CuPy's dimension reduction, 32-bit indexing)
and a general one (strided 2-D, 64-bit indexing).
"""

import offline
import pytest

from gpunet.cuda.lazy import KERNELS, LazyKernel, all_kernels

offline.require_nvrtc()

CASES = [(k.name, dtype, layout) for k in all_kernels() for dtype in k.dtypes
         for layout in offline.LAYOUTS]


@pytest.fixture(scope="module")
def compiled():
    """All cases compiled once for this module: {(name, dtype, layout): NvrtcResult}."""
    results = offline.nvrtc_compile_kernels(
        [(KERNELS[name], dtype, layout) for name, dtype, layout in CASES])
    return {(lazy.name, dtype, layout): r for (lazy, dtype, layout), r in results.items()}


@pytest.mark.parametrize("name,dtype,layout", CASES, ids=["-".join(c) for c in CASES])
def test_kernel_compiles_with_nvrtc(compiled, name, dtype, layout):
    result = compiled[(name, dtype, layout)]
    assert result.ok, f"NVRTC failed for {name} ({dtype}, {layout}):\n{result.log}"
    assert f".entry {name}(" in result.ptx, "the kernel entry point is missing from the PTX"
    assert f".target sm_{offline.ARCH}" in result.ptx
    assert result.cubin_size > 0


def test_float16_where_declared_and_float32_float64_everywhere():
    for k in all_kernels():
        assert {"float32", "float64"} <= set(k.dtypes) <= {"float16", "float32", "float64"}, k
    # the elementwise activations and convolution kernels are declared for half too
    half = {k.name for k in all_kernels() if "float16" in k.dtypes}
    assert half == set(KERNELS) - {"gpunet_sgd_momentum", "gpunet_adam"}


def test_source_is_what_cupy_generates_for_the_kernel_object():
    lazy = KERNELS["gpunet_leaky_relu_backward"]
    src = offline.cuda_source(lazy, "float32")
    kernel = lazy.get()
    assert "typedef float T;" in src
    assert ("(const CArray<float, 1, 1, 1> _raw_dy, const CArray<float, 1, 1, 1> _raw_x, "
            "const float slope, CArray<float, 1, 1, 1> _raw_dx, CIndexer<1, 1> _ind)") in src
    assert kernel.operation in src and kernel.preamble in src
    assert "typedef double T;" in offline.cuda_source(lazy, "float64")
    assert "typedef float16 T;" in offline.cuda_source(lazy, "float16")


@pytest.mark.parametrize("body,message", [
    ("y = x +* ;", "expected an expression"),
    ("y = no_such_function(x);", "no_such_function"),
    ("y = x; }", "expected"),
])
def test_broken_kernel_fails_to_compile(body, message):
    broken = LazyKernel("gpunet_broken", "T x", "T y", body, doc="broken on purpose",
                        register=False)
    result = offline.nvrtc_compile(offline.nvrtc_program(broken, "float32"),
                                   offline.nvrtc_options(broken.get()))
    assert not result.ok
    assert "error" in result.log and message in result.log, result.log



def test_moved_cupy_internals_are_named_as_such(monkeypatch):
    from cupy._core import _kernel

    monkeypatch.delattr(_kernel, "_get_elementwise_kernel_code")
    with pytest.raises(offline.CupyInternalsMoved, match=r"written for CuPy .*kernels. extra"):
        offline.cuda_source(KERNELS["gpunet_relu_backward"], "float32")
