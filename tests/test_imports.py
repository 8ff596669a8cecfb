"""The package's import structure: every module imports alone, no import cycle, the
layers of the backend (``gpunet/cuda`` below ``gpunet/backend``), and no CuPy at import.

The graph is read from the source with :mod:`ast` (function-level imports included), so
a cycle held together by a lazy import inside a function is still a cycle here.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gpunet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name ``from <node.module> import ...`` refers to."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str) -> set[str]:
    """The gpunet modules that module ``name`` imports, anywhere in its source.

    Edges left out, and why:
    * the implicit import of a module's parent packages (Python runs ``gpunet/backend/
      __init__.py`` before ``gpunet/backend/ops.py``): with it, every package ``__init__``
      that re-exports its own submodules (``from .ops import get_ops``) would be a cycle
      by construction, although Python initialises the parent first and the submodule
      needs only its siblings. ``test_every_module_imports_alone`` checks that order.
    * imports under ``if TYPE_CHECKING:``, which never run.
    * ``importlib.import_module`` with a computed name (``gpunet.__getattr__`` loading a
      submodule on first attribute access, ``cuda.lazy.all_kernels``): not an import
      statement, and each runs only on demand from outside the imported module.
    """
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking_only(node)
            for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            # ``from pkg import x`` imports the submodule pkg.x when there is one, else pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # ``import gpunet.backend.ops as o``: the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_reader_sees_function_level_and_relative_imports():
    assert "gpunet.backend.namespace" in GRAPH["gpunet.backend.ops"]
    assert "gpunet.cuda.lazy" in GRAPH["gpunet.cuda.conv"]  # ``from .lazy import ...``
    assert "gpunet._validate" in GRAPH["gpunet.layers.conv"]  # ``from .. import _validate``
    assert "gpunet.backend" in GRAPH["gpunet.layers.conv"]  # ``from ..backend import get_ops``
    lazy = ast.parse("def f():\n    from .numpy_ops import NumpyOps\n").body[0].body[0]
    assert _resolve("gpunet.backend.ops", False, lazy) == "gpunet.backend.numpy_ops"


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cuda_kernels_import_only_the_geometry_leaf():
    """gpunet/cuda holds kernels; it may import itself and gpunet.backend.geometry, which
    imports nothing from gpunet."""
    assert GRAPH["gpunet.backend.geometry"] == set()
    for name, targets in GRAPH.items():
        if name == "gpunet.cuda" or name.startswith("gpunet.cuda."):
            outside = {t for t in targets if not t.startswith("gpunet.cuda")} - {"gpunet.backend.geometry"}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_every_module_imports_alone_and_none_imports_cupy():
    """One interpreter; before each module, every gpunet module is dropped from
    ``sys.modules``, so each import starts from nothing of gpunet (NumPy stays loaded).
    ``gpunet.__main__`` is left out: importing it runs the command line (its job)."""
    names = sorted(set(MODULES) - {"gpunet.__main__"})
    code = textwrap.dedent(f"""
        import importlib, sys, traceback
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == "gpunet" or m.startswith("gpunet.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except BaseException:
                failed.append(name + ":\\n" + traceback.format_exc())
            if "cupy" in sys.modules:
                failed.append(name + ": imported CuPy")
                del sys.modules["cupy"]
        print("\\n".join(failed) or "OK")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK", proc.stdout


@pytest.mark.parametrize("name", ["gpunet", "gpunet.backend.geometry", "gpunet.cuda.conv"])
def test_a_fresh_interpreter_imports_each_entry_point(name):
    """The purge above cannot undo C extensions or NumPy state: a few entry points in a
    really fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", f"import {name}, sys; print('cupy' in sys.modules)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_only_parallel_knows_about_processes():
    """In gpunet/training/, only parallel.py names ranks, world sizes or communicators in code."""
    words = {"rank", "size", "world_size", "comm", "communicator"}  # (asking parallel.is_root is fine)
    for path in sorted((ROOT / "gpunet" / "training").glob("*.py")):
        if path.name == "parallel.py":
            continue
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        found = {n for n in names if n.lower().strip("_") in words}
        assert not found, f"{path.name} names {sorted(found)}: that belongs in training/parallel.py"
