"""gpunet: layers with explicit forward/backward passes, losses, optimizers and a Solver,
running unchanged on NumPy (CPU) or CuPy (CUDA).

Importing gpunet never imports CuPy; submodules load on first use.
"""

from importlib import import_module

from .backend import (
    BackendUnavailableError,
    asarray,
    get_array_module,
    get_backend,
    set_backend,
    to_numpy,
    use_backend,
)
from .backend.namespace import from_dlpack
from .serialize import load_model

__version__ = "0.1.0"

_SUBMODULES = {
    "backend", "layers", "losses", "gradcheck", "optim", "nn", "models", "solver",
    "data", "distributed", "cuda", "schedules", "init", "checkpoint", "cli", "serialize", "export",
}

__all__ = [
    "BackendUnavailableError",
    "asarray",
    "from_dlpack",
    "get_array_module",
    "get_backend",
    "load_model",
    "set_backend",
    "to_numpy",
    "use_backend",
    *sorted(_SUBMODULES),
]


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gpunet' has no attribute {name!r}")
