"""Human-readable facts about the backends: versions, BLAS, CUDA device."""

from __future__ import annotations

import platform
from importlib import metadata

import numpy as np

from .._install import EXTRAS, pip_install
from .cupy_probe import cupy_status
from .switch import ENV_VAR, get_backend


def blas_summary() -> str:
    """The BLAS NumPy calls (name, version, threads) as one line."""
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, "
                             f"{p.get('architecture', '?')})" for p in pools)
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception as exc:  # show_config's layout is not a stable API
        return f"unknown ({type(exc).__name__})"


def device_summary(backend: str) -> str:
    """Where arrays of ``backend`` live, e.g. "CPU (x86_64)" or "CUDA device 0: NVIDIA A100 (40.0 GiB)"."""
    if backend == "cupy":
        cupy, why_not = cupy_status()
        if cupy is None:
            return f"no usable CUDA device ({why_not})"
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        memory = props["totalGlobalMem"] / 2**30
        return f"CUDA device {dev.id}: {name} ({memory:.1f} GiB, compute {dev.compute_capability})"
    if backend == "strict":
        return "array_api_strict test device (runs on the CPU)"
    return f"CPU ({platform.machine()}, NumPy {np.__version__}, BLAS: {blas_summary()})"


def report() -> list[str]:
    """Lines for ``gpunet info``; never raises: a fact that cannot be found is a line saying why."""
    import gpunet

    lines = [
        f"gpunet {gpunet.__version__}",
        f"python {platform.python_version()} ({platform.platform()})",
        f"numpy {np.__version__}",
        f"BLAS: {blas_summary()}",
    ]
    cupy, reason = cupy_status()
    if cupy is None:
        lines.append(f"CuPy: not usable: {reason}")
    else:
        lines.append(f"CuPy {cupy.__version__}: usable: {_fact(lambda: device_summary('cupy'))}")
    lines.append(extra_summary("cpu", "compiled CPU kernels for pooling and conv; GPUNET_NUMBA=0 turns them off"))
    lines.append(extra_summary("train", "plots"))
    lines.append(extra_summary("mpi", "data-parallel training, with an MPI library such as mpich"))
    lines.append(f"default backend ({ENV_VAR} or numpy): {_fact(get_backend)}")
    return lines


def extra_summary(extra: str, purpose: str) -> str:
    """One line: the installed versions of an optional extra's packages, or how to install them."""
    found, missing = [], []
    for name in EXTRAS[extra]:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return f"{extra} ({purpose}): {', '.join(missing)} not installed: `{pip_install(extra)}`"
    return f"{extra} ({purpose}): {', '.join(found)}"


def _fact(find) -> str:
    try:
        return find()
    except Exception as exc:  # report it; `gpunet info` is what a user runs when things fail
        return f"unknown ({type(exc).__name__}: {exc})"
