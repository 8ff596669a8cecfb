"""Kernels described at import, built on first use, cached at module level.

A :class:`LazyKernel` holds the source of one ``cupy.ElementwiseKernel`` (parameter
lists, loop body, preamble). Importing a kernel module imports no CuPy and compiles
nothing; the first call creates the CuPy kernel object once (thread-safe) and CuPy
compiles it per dtype/layout on first launch (cached in memory and in
``~/.cupy/kernel_cache``). Every kernel registers itself in :data:`KERNELS`, which the
offline checks (``tests/cuda``) walk.
"""

from __future__ import annotations

import importlib
import threading

FLOATS = ("float16", "float32", "float64")
FLOATS_32_64 = ("float32", "float64")

#: Arithmetic type per element type: float16 loads and stores as half but computes in
#: float (CuPy's ``float16`` converts implicitly to float); float32/float64 compute in
#: themselves, like the generic NumPy code they are tested against.
ACCUMULATOR_PREAMBLE = """
template <typename T> struct gpunet_acc { typedef T type; };
template <> struct gpunet_acc<float16> { typedef float type; };
"""

#: Every kernel by name (filled as the kernel modules are imported).
KERNELS: dict[str, LazyKernel] = {}
KERNEL_MODULES = ("activations", "conv", "optim")

_lock = threading.Lock()


class LazyKernel:
    """One ``cupy.ElementwiseKernel`` and what the offline checks need to know about it.

    ``scalars`` names the parameters passed as Python scalars (the rest are arrays);
    ``raw_ndim`` gives the ndim of each ``raw`` array parameter; ``dtypes`` lists the
    element types ``T`` the kernel supports (others fall back to the generic code).
    """

    def __init__(self, name, in_params, out_params, operation, *, doc, preamble="",
                 dtypes=FLOATS, scalars=(), raw_ndim=None, register=True):
        if register and name in KERNELS:
            raise ValueError(f"kernel name {name!r} is already defined")
        self.name = name
        self.in_params = in_params
        self.out_params = out_params
        self.operation = operation
        self.preamble = preamble
        self.dtypes = tuple(dtypes)
        self.scalars = tuple(scalars)
        self.raw_ndim = dict(raw_ndim or {})
        self.__doc__ = doc
        self._kernel = None
        if register:  # tests build unregistered mutants of real kernels
            KERNELS[name] = self

    def get(self):
        """The ``cupy.ElementwiseKernel`` (created on the first call, then reused)."""
        kernel = self._kernel
        if kernel is None:
            with _lock:
                if self._kernel is None:
                    import cupy

                    self._kernel = cupy.ElementwiseKernel(
                        self.in_params, self.out_params, self.operation,
                        name=self.name, preamble=self.preamble)
                kernel = self._kernel
        return kernel

    def __call__(self, *args, **kwargs):
        """Launch on CuPy arrays (same call rules as ``cupy.ElementwiseKernel``)."""
        return self.get()(*args, **kwargs)

    def supports(self, *arrays) -> bool:
        """True when all ``arrays`` share one dtype that this kernel is built for."""
        dtype = arrays[0].dtype
        return all(a.dtype == dtype for a in arrays) and str(dtype) in self.dtypes

    def __repr__(self) -> str:
        return f"LazyKernel({self.name!r}, dtypes={self.dtypes})"


def all_kernels() -> list[LazyKernel]:
    """Every kernel of ``gpunet.cuda`` (imports the kernel modules; no CuPy needed)."""
    for module in KERNEL_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return list(KERNELS.values())
