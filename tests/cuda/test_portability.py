"""Static portability check: would the backend-generic modules run on CuPy?

Every ``xp.<name>`` they use must exist in CuPy (by introspection, no device), NumPy and
array_api_strict; and they must not call NumPy on a backend array, read one back
implicitly (``float()``, ``.item()``, ``if array:``, f-strings) or use ``np.add.at``.
See ``static_check.py`` for how "backend array" is decided from the source.
"""

import importlib
import textwrap

import numpy as np
import pytest
import static_check
from offline import REPO, kernels_hint

from gpunet._install import clone_install

# Modules that are not backend-generic, with the reason. Paths ending in "/" are folders.
# Everything else under gpunet/ is scanned, including modules added later.
NOT_GENERIC = {
    "gpunet/cuda/": "CuPy-only: the kernels",
    "gpunet/backend/cupy_ops.py": "CuPy-only: CupyOps (over the kernels, plus cupy.random)",
    "gpunet/backend/cupy_bench.py": "CuPy-only: times the kernels on a device",
    "gpunet/backend/namespace.py": "moves arrays between backends: host conversion is its job",
    "gpunet/backend/cupy_status.py": "imports and probes CuPy",
    "gpunet/backend/cupy_probe.py": "imports and probes CuPy",
    "gpunet/backend/strict.py": "configures array_api_strict",
    "gpunet/data/": "data loading: reads files into host arrays",
    "gpunet/data.py": "data loading: reads files into host arrays",
    "gpunet/cli/": "the command line",
    "gpunet/__main__.py": "the command line",
}

MODULES = static_check.generic_modules(REPO, NOT_GENERIC)
MODULE_IDS = [p.relative_to(REPO).as_posix() for p in MODULES]


def _namespace(name):
    hint = {"cupy": kernels_hint(), "array_api_strict": clone_install("test")}.get(name)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.skip(f"{name} is needed to look names up ({exc}): {hint}")


def test_the_scan_covers_the_generic_modules_only():
    assert "gpunet/backend/ops.py" in MODULE_IDS
    assert not [m for m in MODULE_IDS if m.startswith(("gpunet/cuda/", "gpunet/data/"))]
    for layer_module in (REPO / "gpunet" / "layers").glob("*.py"):
        assert layer_module.relative_to(REPO).as_posix() in MODULE_IDS


@pytest.mark.parametrize("namespace", ["cupy", "numpy", "array_api_strict"])
def test_every_xp_name_exists_in_the_namespace(namespace):
    xp = _namespace(namespace)
    missing = {}
    for path in MODULES:
        for chain in static_check.xp_names(path.read_text()):
            if not static_check.resolve(xp, chain):
                missing.setdefault("xp." + ".".join(chain), []).append(
                    path.relative_to(REPO).as_posix())
    assert not missing, (f"names used on the array namespace that {namespace} "
                         f"{getattr(xp, '__version__', '')} lacks: {missing}")


@pytest.mark.parametrize("path", MODULES, ids=MODULE_IDS)
def test_no_numpy_call_or_host_read_of_a_backend_array(path):
    rel = path.relative_to(REPO).as_posix()
    findings = static_check.device_leaks(rel, path.read_text())
    assert not findings, "backend arrays leave the device:\n" + "\n".join(map(str, findings))


# --- the checker itself ------------------------------------------------------------------

LEAKY = textwrap.dedent('''
    import numpy as np
    from gpunet.backend import get_array_module

    def layer(x, w, cfg):
        xp = get_array_module(x, w)
        out = xp.matmul(x, w)
        total = np.sum(out)
        if xp.any(out < 0):
            pass
        peak = float(xp.max(out))
        first = out[0].item()
        np.add.at(out, [0], 1.0)
        xp.add.at(out, [0], 1.0)
        print(f"{out}")
        ok = out and x.shape[0] > 0
        return xp.no_such_function(out), xp.linalg.no_such_norm(out)
''')


def test_the_checker_finds_each_kind_of_leak():
    findings = static_check.device_leaks("leaky.py", LEAKY)
    found = {(f.line, f.message.split(" (")[0].split(";")[0]) for f in findings}
    assert found == {
        (8, "NumPy call np.sum() on a backend array"),
        (9, "truth value of a backend array"),
        (11, "float() of a backend array"),
        (12, ".item() of a backend array"),
        (13, "ufunc.at"),
        (14, "ufunc.at"),
        (15, "formats a backend array"),
        (16, "truth value of a backend array"),  # `out and ...` calls bool(out)
    }, "\n".join(map(str, findings))


def test_the_checker_finds_names_cupy_lacks():
    names = static_check.xp_names(LEAKY)
    assert {("matmul",), ("any",), ("max",), ("no_such_function",),
            ("linalg", "no_such_norm")} <= names
    assert static_check.resolve(np, ("linalg", "norm"))
    assert not static_check.resolve(np, ("linalg", "no_such_norm"))
    assert not static_check.resolve(np, ("no_such_function",))


HOST_SIDE = textwrap.dedent('''
    import numpy as np
    from gpunet.backend import backend_of, get_array_module, to_numpy

    def is_small(x) -> bool:
        return x.shape[0] < 10

    def fine(x, y: np.ndarray, cfg, rng):
        xp = get_array_module(x)
        n, d = x.shape
        if n == 0 or is_small(x):
            return x
        eps = float(cfg.get("eps", 1e-5))
        host = to_numpy(xp.sum(x))
        value = float(np.max(host))
        lo = int(y.min())
        noise = np.random.default_rng(rng).random((n, d))
        if backend_of(x) == "numpy" and float(x.min()) < 0:
            pass
        if isinstance(x, np.ndarray):
            np.add(x, 1.0)
        if x.ndim != 2:
            raise ValueError(f"x must be 2-D, got {x}")
        x = to_numpy(x)
        print(f"{x}", float(x[0, 0]))
        return eps, value, lo, noise

    def numpy_only_after(x):
        if backend_of(x) != "numpy":
            return x
        return np.cumsum(x)
''')


def test_the_checker_accepts_host_side_code():
    findings = static_check.device_leaks("host_side.py", HOST_SIDE)
    assert not findings, "\n".join(map(str, findings))
