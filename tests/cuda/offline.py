"""Offline verification of the CUDA kernels, on a machine without a GPU.

Two tools, both fed from the kernel objects themselves (``LazyKernel.get()`` builds the
``cupy.ElementwiseKernel``; that needs CuPy installed but no device):

* :func:`cuda_source` / :func:`nvrtc_compile`: the exact source CuPy generates for an
  ElementwiseKernel (CuPy's private ``_get_elementwise_kernel_code``, fed with
  hand-built ``_ArgInfo``/``_TypeMap``), compiled by NVRTC with CuPy's own options at
  an explicit architecture, through the thin ``cupy.cuda.nvrtc`` wrappers that do not
  ask for a device.
* :class:`CpuLibrary`: every kernel's parameter lists and loop body wrapped in a C++
  loop, compiled by the host C++ compiler into one shared library, loaded with ctypes;
  :class:`CpuElementwise` calls it with ElementwiseKernel's calling rules on NumPy
  arrays, so a ``CupyOps(numpy)`` can run its real code path on the CPU.

The CuPy internals used here are private: the ``kernels`` extra of setup.cfg pins the
CuPy version, and :class:`CupyInternalsMoved` names it when they change.
"""

from __future__ import annotations

import configparser
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from gpunet._install import clone_install

REPO = Path(__file__).resolve().parents[2]
ARCH = "80"  # sm_80 (A100); any architecture NVRTC supports would do
LAYOUTS = ("contiguous", "strided")
CPU_DTYPES = ("float32", "float64")

# _ArgKind of cupy/_core/_kernel.pxd (ARG_KIND_NDARRAY = 1, INDEXER, SCALAR, ...)
_ARG_NDARRAY, _ARG_INDEXER, _ARG_SCALAR = 1, 2, 3


# --- CuPy and its private code generator ----------------------------------------------


def _kernels_extra() -> str:
    """The requirement lines of the ``kernels`` extra in setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg.get("options.extras_require", "kernels", fallback="")


def pinned_cupy() -> str:
    """The ``cupy-cuda13x==X`` pin of the ``kernels`` extra in setup.cfg."""
    match = re.search(r"cupy[\w-]*==\s*([\w.]+)", _kernels_extra())
    return match.group(1) if match else "(no pin found in setup.cfg [kernels])"


def kernels_hint() -> str:
    """How to get CuPy and NVRTC for these checks on this machine, or why it cannot have them
    (the ``kernels`` extra's environment markers leave out platforms without those wheels)."""
    env = default_environment()
    requirements = [Requirement(line) for line in _kernels_extra().splitlines() if line.strip()]
    if requirements and not any(r.marker is None or r.marker.evaluate(env) for r in requirements):
        return (f"there are no CuPy/NVRTC wheels for {env['platform_system']} {env['platform_machine']}, so the "
                "`kernels` extra installs nothing here; these checks run on Linux and Windows (and in CI)")
    return f"{clone_install('kernels')} (CuPy and NVRTC from pip, about 130 MB; no GPU needed)"


def require_cupy():
    """The cupy module, or skip saying which extra provides it."""
    try:
        import cupy
    except ImportError as exc:
        pytest.skip(f"offline CUDA checks need CuPy and NVRTC from pip ({exc}): {kernels_hint()}",
                    allow_module_level=True)
    return cupy


def require_nvrtc():
    """``cupy.cuda.nvrtc`` with a loadable NVRTC library, or skip naming the extra."""
    require_cupy()
    from cupy.cuda import nvrtc

    try:
        nvrtc.getVersion()
    except Exception as exc:  # the library itself is missing
        pytest.skip(f"NVRTC is not loadable ({type(exc).__name__}: {exc}): {kernels_hint()}",
                    allow_module_level=True)
    return nvrtc


class CupyInternalsMoved(AssertionError):
    """CuPy's private kernel-code generator is not what these checks were written for."""


def _internals_moved(what: str, exc: BaseException | None = None) -> CupyInternalsMoved:
    cupy = require_cupy()
    detail = f" ({type(exc).__name__}: {exc})" if exc else ""
    return CupyInternalsMoved(
        f"CuPy's private kernel-code internals moved: {what}{detail}. These checks read "
        f"cupy._core._kernel._get_elementwise_kernel_code/_ArgInfo/_TypeMap and were written "
        f"for CuPy {pinned_cupy()} (the pin of the `kernels` extra); installed: "
        f"{cupy.__version__}. Install the pin ({clone_install('kernels')}) or update tests/cuda/offline.py "
        f"and the pin together.")


def _arginfos(lazy, kernel, dtype, layout):
    """The ``_ArgInfo`` tuple and ``_TypeMap`` CuPy builds for a call in ``layout``.

    ``contiguous``: every array C-contiguous and < 2**31 elements, so CuPy reduces the
    non-raw arrays to 1-D with 32-bit indexing (the common call). ``strided``: non-raw
    arrays 2-D, not contiguous, 64-bit indexing (broadcast, sliced or huge inputs).
    """
    cupy = require_cupy()
    dtype = np.dtype(dtype)
    contiguous = layout == "contiguous"
    ndim = 1 if contiguous else 2
    # (kind, dtype, ndim, c_contiguous, 32-bit indexing) per parameter, in kernel.params order
    specs = []
    for p in kernel.params:
        if p.ctype is None:  # 'CIndexer _ind', the last parameter
            specs.append((_ARG_INDEXER, None, ndim, True, contiguous))
            continue
        p_dtype = dtype if p.dtype is None else np.dtype(p.dtype)
        if p.name in lazy.scalars:
            specs.append((_ARG_SCALAR, p_dtype, 0, True, True))
        else:
            a_ndim = lazy.raw_ndim[p.name] if p.raw else ndim
            specs.append((_ARG_NDARRAY, p_dtype, a_ndim, contiguous, contiguous))
    typevars = sorted({p.ctype for p in kernel.params if p.ctype is not None and p.dtype is None})
    try:
        from cupy._core import _carray, _kernel, _scalar

        types = {_ARG_INDEXER: _carray.Indexer, _ARG_SCALAR: _scalar.CScalar,
                 _ARG_NDARRAY: cupy.ndarray}
        infos = [_kernel._ArgInfo(kind, types[kind], *rest) for kind, *rest in specs]
        type_map = _kernel._TypeMap(tuple((t, dtype) for t in typevars))
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise _internals_moved("cannot build _ArgInfo/_TypeMap", exc) from exc
    return tuple(infos), type_map


def cuda_source(lazy, dtype, layout="contiguous") -> str:
    """The kernel source CuPy compiles for ``lazy`` (what ``kernel.cached_code`` shows)."""
    kernel = lazy.get()
    arginfos, type_map = _arginfos(lazy, kernel, dtype, layout)
    try:
        from cupy._core import _kernel

        code = _kernel._get_elementwise_kernel_code(
            arginfos, type_map, kernel.params, kernel.operation, kernel.name,
            kernel.preamble, **kernel.kwargs)
    except (ImportError, AttributeError, TypeError) as exc:
        raise _internals_moved("_get_elementwise_kernel_code failed", exc) from exc
    _check_generated(code, lazy, kernel, dtype, layout)
    return code


def _check_generated(code, lazy, kernel, dtype, layout):
    """The generated code has the signature the arginfos stand for (else: internals moved)."""
    from cupy._core._scalar import get_typename

    ctype = get_typename(np.dtype(dtype))
    contiguous = int(layout == "contiguous")
    expected = [f'extern "C" __global__ void {kernel.name}(', f"typedef {ctype} T;",
                f"CIndexer<{1 if contiguous else 2}, {contiguous}>"]
    for p in kernel.in_params + kernel.out_params:
        if p.name in lazy.scalars:
            p_dtype = dtype if p.dtype is None else p.dtype
            expected.append(f"{get_typename(np.dtype(p_dtype))} {p.name}")
        elif p.raw:
            expected.append(f"CArray<{ctype}, {lazy.raw_ndim[p.name]}, {contiguous}, {contiguous}")
        else:
            expected.append(f"CArray<{ctype}, {1 if contiguous else 2}, {contiguous}, {contiguous}")
    missing = [e for e in expected if e not in code]
    if missing:
        raise _internals_moved(f"generated code lacks {missing}:\n{code}")


@dataclass
class NvrtcResult:
    ok: bool
    log: str
    ptx: str = ""
    cubin_size: int = 0


def nvrtc_options(kernel, arch=ARCH) -> tuple:
    """The options CuPy's compile_with_cache passes to NVRTC, with an explicit arch."""
    from cupy._core import core

    try:
        options = core.assemble_cupy_compiler_options(tuple(kernel.kwargs.get("options", ())))
    except AttributeError as exc:
        raise _internals_moved("cupy._core.core.assemble_cupy_compiler_options", exc) from exc
    # added by cupy.cuda.compiler._compile_with_cache_cuda / compile_using_nvrtc
    return options + ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")


def nvrtc_program(lazy, dtype, layout="contiguous") -> str:
    """Kernel source with the CuPy headers that compile_with_cache prepends."""
    from cupy._core import core

    header = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    return header + cuda_source(lazy, dtype, layout)


def nvrtc_compile(source: str, options: tuple, name="gpunet_kernel.cu") -> NvrtcResult:
    """Compile with NVRTC (no device needed); PTX and CUBIN on success, the log either way."""
    nvrtc = require_nvrtc()
    prog = nvrtc.createProgram(source, name, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as exc:
            return NvrtcResult(False, f"{exc}\n{nvrtc.getProgramLog(prog)}")
        ptx = nvrtc.getPTX(prog)
        ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
        return NvrtcResult(True, nvrtc.getProgramLog(prog), ptx, len(nvrtc.getCUBIN(prog)))
    finally:
        nvrtc.destroyProgram(prog)


def nvrtc_compile_kernels(cases) -> dict:
    """``{(lazy, dtype, layout): NvrtcResult}`` for all cases, two compiles at a time."""
    require_nvrtc()
    jobs = {case: (nvrtc_program(*case), nvrtc_options(case[0].get())) for case in cases}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        results = pool.map(lambda job: nvrtc_compile(*job), jobs.values())
        return dict(zip(jobs, results))


# --- the kernel bodies on the CPU ----------------------------------------------------

_CPU_PRELUDE = """\
// Generated by tests/cuda/offline.py: CuPy ElementwiseKernel bodies in C++ loops.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#define __device__
#define __host__
#define __forceinline__ inline
class float16;  // as in cupy/carray.cuh; the CPU runs cover float32 and float64
static_assert(std::is_same<decltype(std::tanh(1.0f)), float>::value, "float math overloads");
"""

_CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "int": ctypes.c_int,
           "long long": ctypes.c_longlong, "bool": ctypes.c_bool}
_NP_OF_CTYPE = {"float": np.float32, "double": np.float64, "int": np.int32,
                "long long": np.int64, "bool": np.bool_}


def _c_name(lazy, dtype) -> str:
    return f"{lazy.name}__{np.dtype(dtype).name}"


def cpu_source(kernels, dtypes=CPU_DTYPES) -> str:
    """One C++ file: per kernel a namespace with its preamble and a loop over its body,
    and ``extern "C" void <name>__<dtype>(void* const* args, ptrdiff_t n)`` entry points
    (``args``: one pointer per parameter, to the array data or to the scalar)."""
    parts = [_CPU_PRELUDE]
    for lazy in kernels:
        k = lazy.get()
        unpack, bind = [], []
        for idx, p in enumerate(k.in_params + k.out_params):
            t = "T" if p.dtype is None else p.ctype
            const = "const " if p.is_const else ""
            if p.name in lazy.scalars:
                unpack.append(f"  const {t} {p.name} = *static_cast<const {t}*>(_args[{idx}]);")
            elif p.raw:
                unpack.append(f"  {const}{t}* {p.name} = static_cast<{const}{t}*>(_args[{idx}]);")
            else:
                unpack.append(f"  {const}{t}* _raw_{p.name} = static_cast<{const}{t}*>(_args[{idx}]);")
                bind.append(f"    {const}{t} &{p.name} = _raw_{p.name}[i];")
        ns = f"{k.name}_cpu"
        parts.append(
            f"namespace {ns} {{\nusing namespace std;\n{k.preamble}\n"
            f"template <typename T>\nvoid run(void* const* _args, ptrdiff_t _n) {{\n"
            + "\n".join(unpack)
            + "\n  for (ptrdiff_t i = 0; i < _n; ++i) {\n"
            + "\n".join(bind)
            + f"\n{k.operation}\n    ;\n  }}\n}}\n}}  // namespace {ns}\n")
        for dtype in dtypes:
            ctype = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
            parts.append(f'extern "C" void {_c_name(lazy, dtype)}(void* const* a, ptrdiff_t n) '
                         f"{{ {ns}::run<{ctype}>(a, n); }}\n")
    return "\n".join(parts)


def host_compiler() -> str:
    """g++ (or $CXX, c++, clang++), or skip: the CPU runs need a C++ compiler."""
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(cxx):
            return cxx
    pytest.skip("running the kernel bodies on the CPU needs a C++ compiler (g++ or $CXX)")


class CpuLibrary:
    """The kernel bodies of ``kernels`` compiled into one shared library (built once)."""

    def __init__(self, kernels, build_dir: Path):
        self.kernels = {lazy.name: lazy for lazy in kernels}
        source = cpu_source(kernels)
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        build_dir.mkdir(parents=True, exist_ok=True)
        src = build_dir / f"gpunet_kernels_{digest}.cpp"
        lib = build_dir / f"gpunet_kernels_{digest}.so"
        src.write_text(source)
        cmd = [host_compiler(), "-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off",
               "-Wall", "-Wno-unused-variable", "-o", str(lib), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(f"C++ compile of the kernel bodies failed:\n{' '.join(cmd)}\n"
                                 f"{proc.stderr}")
        self.warnings = proc.stderr
        self.source_path = src
        self._dll = ctypes.CDLL(str(lib))
        self._lock = threading.Lock()

    def run(self, lazy, dtype, pointers, n: int) -> None:
        fn = getattr(self._dll, _c_name(lazy, dtype))
        fn.restype = None
        fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_ssize_t]
        argv = (ctypes.c_void_p * len(pointers))(*pointers)
        fn(argv, n)

    def kernel(self, lazy) -> CpuElementwise:
        return CpuElementwise(self, lazy)


class CpuElementwise:
    """Calls a kernel body compiled by :class:`CpuLibrary` on NumPy arrays with the
    calling rules of ``cupy.ElementwiseKernel``: ``T`` must agree across arrays (else
    TypeError), non-raw arrays broadcast, outputs are allocated or written in place,
    the loop runs over the broadcast shape. ``calls`` counts launches."""

    def __init__(self, library: CpuLibrary, lazy):
        self.library = library
        self.lazy = lazy
        self.kernel = lazy.get()
        self.calls = 0

    def __call__(self, *args):
        k, lazy = self.kernel, self.lazy
        if len(args) not in (k.nin, k.nargs):
            raise TypeError(f"{k.name}: {len(args)} arguments, expected {k.nin} or {k.nargs}")
        params = k.in_params + k.out_params
        dtype = None
        for p, a in zip(params, args):
            is_array = isinstance(a, np.ndarray)
            if is_array == (p.name in lazy.scalars):
                raise TypeError(f"{k.name}: {p.name} given as "
                                f"{'an array' if is_array else 'a scalar'}, the kernel "
                                f"is declared with it as the opposite")
            if is_array and p.dtype is None:
                if dtype is not None and a.dtype != dtype:
                    raise TypeError(f"{k.name}: type mismatch for {p.name}: {a.dtype} vs {dtype}")
                dtype = a.dtype
        if dtype is None or dtype.name not in CPU_DTYPES:
            raise TypeError(f"{k.name}: no CPU build for dtype {dtype}")
        nonraw = [a for p, a in zip(params, args) if isinstance(a, np.ndarray) and not p.raw]
        shape = np.broadcast_shapes(*[a.shape for a in nonraw])
        outs = list(args[k.nin:]) or [np.empty(shape, dtype) for _ in k.out_params]
        for p, o in zip(k.out_params, outs):
            if not p.raw and o.shape != shape:
                raise ValueError(f"{k.name}: out shape {o.shape} != {shape}")
        keep, pointers, writeback = [], [], []
        for p, a in zip(params, list(args[:k.nin]) + outs):
            p_dtype = dtype if p.dtype is None else np.dtype(p.dtype)
            if p.name in lazy.scalars:
                buf = np.asarray(a, dtype=p_dtype)  # CuPy's CScalar cast to the param type
            elif not p.is_const:  # an output: written in place
                buf = a if a.flags.c_contiguous else np.ascontiguousarray(a)
                if buf is not a:
                    writeback.append((a, buf))
            elif p.raw:
                buf = np.ascontiguousarray(a)
            else:
                buf = np.ascontiguousarray(np.broadcast_to(a, shape))
            keep.append(buf)
            pointers.append(buf.ctypes.data)
        self.library.run(lazy, dtype, pointers, int(np.prod(shape, dtype=np.int64)))
        for target, buf in writeback:
            target[...] = buf
        self.calls += 1
        return outs[0] if len(outs) == 1 else tuple(outs)


# --- inputs and comparison -----------------------------------------------------------


def special_values(dtype) -> np.ndarray:
    """0, -0, +-1, +-inf, NaN, the tiniest subnormal and normal, huge, and a few in between."""
    f = np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, np.inf, -np.inf, np.nan,
              f.smallest_subnormal, -f.smallest_subnormal, f.smallest_normal,
              -f.smallest_normal, f.max, -f.max, 1e30 if f.bits > 16 else 1e4,
              -1e30 if f.bits > 16 else -1e4, 40.0, -40.0, 1e-3]
    return np.array(values, dtype=dtype)


def value_grid(dtype, rng, n_arrays: int, extra: int = 64):
    """``n_arrays`` flat arrays: every combination of special values (for 1 or 2 arrays;
    each array a shuffled repeat of them for more), followed by ``extra`` random normals;
    length ``len(special_values)**2 + extra`` either way."""
    s = special_values(dtype)
    if n_arrays <= 2:
        grids = [g.ravel() for g in np.meshgrid(*([s] * n_arrays), indexing="ij")]
    else:
        grids = [rng.permutation(np.tile(s, s.size)) for _ in range(n_arrays)]
    return [np.concatenate([g, rng.standard_normal(extra).astype(dtype)]).astype(dtype)
            for g in grids]


def assert_matches(actual, expected, tol: dict, signed_zeros=True, what=""):
    """Same shape/dtype, NaN and ±inf at the same places, finite values within ``tol``,
    and (if ``signed_zeros``) the same sign where both are zero."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.ravel(), expected.ravel()
    bad = np.isnan(a) != np.isnan(e)
    bad |= np.isposinf(a) != np.isposinf(e)
    bad |= np.isneginf(a) != np.isneginf(e)
    fin = np.isfinite(a) & np.isfinite(e)
    with np.errstate(all="ignore"):
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        bad[fin] |= diff[fin] > tol["atol"] + tol["rtol"] * np.abs(e[fin].astype(np.float64))
    if signed_zeros:
        zeros = (a == 0) & (e == 0)
        bad[zeros] |= np.signbit(a[zeros]) != np.signbit(e[zeros])
    if bad.any():
        idx = np.flatnonzero(bad)[:8]
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {a.size} elements differ; first at flat index "
            f"{idx.tolist()}: actual {a[idx].tolist()} expected {e[idx].tolist()}")
