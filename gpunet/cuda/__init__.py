"""CUDA kernels of the CuPy backend (custom ``cupy.ElementwiseKernel``s), and nothing else:
``gpunet/backend/cupy_ops.py`` (``CupyOps``) calls them. This package imports from gpunet
only the geometry leaf ``gpunet.backend.geometry``.

Where things are (see ``README.md`` next to this file for the full table):

* ``activations.py``: sigmoid forward/backward, ReLU and leaky-ReLU backward, bias + ReLU
* ``conv.py``: im2col and col2im
* ``optim.py``: fused SGD-momentum and Adam updates
* ``lazy.py``: ``LazyKernel``, the build-once cache, and the ``KERNELS`` registry

``python -m gpunet.backend.cupy_bench`` times the kernels against the generic code.
Importing this package imports no CuPy and compiles nothing. GPU memory comes from
CuPy's memory pool; limit it with ``cupy.get_default_memory_pool().set_limit(size=...)``
(or ``fraction=...``) or, before starting Python, ``CUPY_GPU_MEMORY_LIMIT=4294967296``
(bytes) or ``CUPY_GPU_MEMORY_LIMIT=50%``.
"""
