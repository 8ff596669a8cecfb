"""Random number generators: every random draw in gpunet goes through a NumPy Generator
that the caller owns (a model's ``rng``, a Solver's), never NumPy's global state."""

from __future__ import annotations

import numpy as np


def as_rng(rng) -> np.random.Generator:
    """A numpy Generator from a Generator (returned as is), an int seed or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
