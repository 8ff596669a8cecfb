"""Host memory for training loops: keep freed NumPy memory in the process for reuse.

A training step allocates and frees the same arrays (activations, gradients) every time.
glibc's malloc gives large freed blocks back to the operating system (``munmap`` above
its mmap threshold, heap trimming above its trim threshold), so the next step faults the
same memory in again, zero-filled, page by page: measured at up to a third of an MLP step
(``scripts/bench.py``, column ``faults``). :func:`keep_freed_memory` raises both
thresholds, the host analogue of CuPy's memory pool on the GPU: the process keeps up to
its peak step's memory instead of returning and refaulting it. It changes the allocator of
the whole process (not only gpunet's arrays) and does nothing outside glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

from .. import _validate

#: glibc ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

#: glibc's ceiling for the mmap threshold on 64-bit systems: larger blocks (conv column
#: buffers, whole datasets) are still mapped and returned on free.
MMAP_THRESHOLD_MAX = 32 * 2**20

#: Environment variable that turns :func:`keep_freed_memory` into a no-op when "0".
ENV = "GPUNET_KEEP_HOST_MEMORY"


def keep_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Make glibc keep freed heap memory (up to ``trim_threshold`` bytes at the top of the
    heap) and serve blocks up to 32 MiB from the heap, so repeated training steps reuse
    their memory instead of faulting it in again. Returns whether the setting took effect
    (False off glibc, or when ``GPUNET_KEEP_HOST_MEMORY=0``)."""
    trim_threshold = _validate.integer("trim_threshold", trim_threshold, low=0, fn="keep_freed_memory")
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded in this process
    except (OSError, AttributeError):  # C libraries without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(trim_threshold, 2**31 - 1)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
