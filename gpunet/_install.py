"""Install commands that gpunet prints, in one place: quoted for every shell, runnable as shown.

gpunet is not on the package index, so a hint never says ``pip install gpunet[...]``: it
names the packages an extra of setup.cfg adds (that works however gpunet was installed),
or, for contributors in a clone, ``pip install -e ".[extra]"``. A leaf module: it imports
nothing from gpunet. ``tests/test_packaging.py`` keeps :data:`EXTRAS` equal to setup.cfg.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "clone_install", "pip_install"]

# What each extra of setup.cfg adds (package name: version specifier), for the extras whose
# packages gpunet asks for at run time.
EXTRAS: dict[str, dict[str, str]] = {
    "cuda12": {"cupy-cuda12x": ">=13.3"},
    "cuda13": {"cupy-cuda13x": ">=14"},
    "cpu": {"numba": ">=0.60"},
    "train": {"matplotlib": ">=3.8"},
    "mpi": {"mpi4py": ">=4.0"},
}


def pip_install(extra: str) -> str:
    """``pip install "pkg>=x" ...``: the packages the setup.cfg extra ``extra`` adds, each quoted."""
    if extra not in EXTRAS:
        raise ValueError(f"no install hint for extra {extra!r}; expected one of {sorted(EXTRAS)} "
                         "(add it to EXTRAS in gpunet/_install.py, as in setup.cfg)")
    return "pip install " + " ".join(f'"{name}{spec}"' for name, spec in EXTRAS[extra].items())


def clone_install(*extras: str) -> str:
    """``pip install -e ".[a,b]"``: the editable install with ``extras``, run in a gpunet clone."""
    return f'pip install -e ".[{",".join(extras)}]"'
