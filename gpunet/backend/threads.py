"""A small thread pool for the NumPy backend's passes that are not GEMMs.

NumPy's ufuncs and copies release the GIL, so the slices of one elementwise pass, copy or
pooling can run on several cores at once. :func:`parallel` splits a range of items (samples,
rows, elements) into one contiguous part per thread; each part runs the same operations as
the whole would, so results are bit-identical to one thread. GEMMs are never run here:
BLAS threads them itself, and the pool's work only runs between GEMMs.

Off by default (1 thread): on the 2-core reference machine every split measured slower
than one thread or tied, with BLAS on both cores (its threads spin between GEMMs) and
with BLAS on one (docs/bench.md). ``GPUNET_THREADS=N`` (read on first use) or
:func:`set_threads` turns it on, e.g. on a machine with cores that BLAS leaves idle.
The compiled kernels (:mod:`~gpunet.backend.numba_kernels`) run on the same count.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

THREADS_ENV = "GPUNET_THREADS"

_lock = threading.Lock()
_threads: int | None = None  # None: not read from the environment yet
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_inside = threading.local()  # set in the pool's threads: no nested splitting there


def _from_env() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"environment variable {THREADS_ENV} must be an int >= 1 (1 = no threads), got "
                         f"{raw!r}; fix or unset it")
    return n


def get_threads() -> int:
    """Threads that :func:`parallel` uses (1: everything runs in the calling thread)."""
    global _threads
    if _threads is None:
        with _lock:
            if _threads is None:
                _threads = _from_env()
    return _threads


def set_threads(n: int) -> int:
    """Use ``n`` threads (>= 1; 1 turns the pool off) from now on; returns the old count."""
    global _threads, _pool
    # checked here, as switch.py checks a backend name: gpunet._validate imports gpunet.backend
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_threads: n must be an int >= 1 (1 = no threads), got {n!r}")
    n = int(n)
    old = get_threads()
    with _lock:
        _threads = n
        if _pool is not None and _pool_workers != n - 1:
            _pool.shutdown(wait=True)
            _pool = None
    return old


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    pool = _pool
    if pool is None:
        with _lock:
            if _pool is None:
                _pool_workers = workers
                _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpunet",
                                           initializer=setattr, initargs=(_inside, "active", True))
            pool = _pool
    return pool


def parts(n: int, min_items: int) -> int:
    """How many parts :func:`parallel` splits ``n`` items into (each at least ``min_items``)."""
    threads = get_threads()
    if threads < 2 or getattr(_inside, "active", False):
        return 1
    return max(1, min(threads, n // max(min_items, 1)))


def parallel(fn: Callable[[int, int], object], n: int, min_items: int = 1) -> None:
    """Run ``fn(start, stop)`` over contiguous parts of ``range(n)``: one part per thread,
    each of at least ``min_items`` items (else fewer parts). The caller runs the first part,
    then every part no pool thread has started yet (so a busy machine, where the pool's
    threads wait for a core, costs no waiting). Exceptions of any part are raised here
    after all parts have finished."""
    k = parts(n, min_items)
    if k < 2:
        fn(0, n)
        return
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_executor(get_threads() - 1).submit(fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
    _inside.active = True  # a part that calls parallel() again runs it in this thread
    try:
        fn(bounds[0], bounds[1])
        for i, f in enumerate(futures, start=1):
            if f.cancel():  # no thread has started it (a busy machine): run it here, never wait for one
                fn(bounds[i], bounds[i + 1])
    finally:
        _inside.active = False
        for f in futures:
            if not f.cancelled():
                f.exception()  # wait for every started part before raising
    for f in futures:
        if not f.cancelled():
            f.result()
