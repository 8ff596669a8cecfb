"""Static portability check of the backend-generic modules (no device, no imports of them).

Two questions, answered from the source with :mod:`ast`:

* :func:`xp_names`: which ``xp.<name>`` (and ``xp.<sub>.<name>``) a module uses, where
  ``xp`` is a name bound to an array namespace (``xp``, ``self.xp``, or assigned from
  ``get_array_module(...)``/``self.xp``); the test looks each one up in CuPy.
* :func:`device_leaks`: NumPy calls, ``float()``/``int()``/``bool()``/``complex()``,
  ``.item()``/``.tolist()``, implicit truth tests and f-string formatting applied to
  *backend arrays*, and any ``<namespace>.<ufunc>.at(...)`` (``np.add.at``).

"Backend array" is an approximation, function by function, in statement order: a
parameter is an array when the function reads array metadata from it (``x.shape``,
``x.dtype``, ...) or passes it first to an ``xp`` function (unless annotated
``np.ndarray``); a name becomes an array when assigned an expression involving one
(``xp`` calls, arithmetic, calls taking arrays) and stops being one when reassigned a
host value (NumPy calls, ``to_numpy``, ``len``, ``.shape`` & co., functions of the
module annotated ``-> bool``/``int``/``float``/``str``). Code that runs only on NumPy
data is exempt: the body of ``if backend_of(a) == "numpy"``, ``if isinstance(a,
np.<type>)``, ``if xp is np`` (and the later operands of such an ``and``), the rest of
a block after ``if backend_of(a) != "numpy": return``, and ``raise`` statements (the
error path may read values back to explain itself).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Array metadata: reading it is host-side and marks the object as an array.
HOST_ATTRS = {"shape", "ndim", "dtype", "size", "device", "itemsize", "nbytes", "flags",
              "strides", "__array_namespace__"}
ARRAY_ATTRS = HOST_ATTRS | {"T", "mT", "reshape", "astype", "transpose", "ravel", "sum"}
# xp functions whose result lives on the host (dtype information).
HOST_XP = {"finfo", "iinfo", "isdtype", "result_type", "can_cast", "dtype",
           "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "uint16", "uint32", "uint64", "bool", "bool_", "__name__"}
# xp functions whose first argument is a shape or host data, not an array to inspect.
XP_CREATION = {"asarray", "zeros", "ones", "empty", "full", "arange", "eye", "linspace",
               "from_dlpack"}
# builtins / helpers returning host values whatever they are given
HOST_CALLS = {"len", "isinstance", "issubclass", "type", "id", "range", "hasattr", "getattr",
              "callable", "repr", "str", "to_numpy", "backend_of", "get_array_module",
              "get_ops", "host_dtype", "tuple", "list", "dict", "set", "sorted", "min", "max"}
SYNC_CALLS = {"float", "int", "bool", "complex", "print"}
SYNC_METHODS = {"item", "tolist"}
ALL = object()  # "every name is host here"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str
    source: str

    def __str__(self):
        return f"{self.path}:{self.line}: {self.message}: {self.source}"


def _numpy_aliases(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "numpy":
                    names.add(a.asname or "numpy")
        elif isinstance(node, ast.ImportFrom) and node.module == "numpy":
            for a in node.names:
                names.add(a.asname or a.name)  # from numpy import sum: sum(x) is numpy's
    return names


def _root(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def _attr_chain(node) -> list[str]:
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    return chain[::-1]


def _own_nodes(fn):
    """Nodes of a function body, not descending into nested functions/classes/lambdas."""
    stack = list(fn.body) if hasattr(fn, "body") and isinstance(fn.body, list) else [fn.body]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                      ast.Lambda)):
                stack.append(child)


def _scopes(tree):
    """The module body and every function (each analysed on its own)."""
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


HOST_RETURNS = {"bool", "int", "float", "str", "bytes", "None"}


def _host_functions(tree) -> set[str]:
    """Functions/methods of the module annotated to return a host scalar (``-> bool``...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            r = node.returns
            if (isinstance(r, ast.Name) and r.id in HOST_RETURNS) or (
                    isinstance(r, ast.Constant) and (r.value is None or r.value in HOST_RETURNS)):
                names.add(node.name)
    return names


class _Scope:
    """Names of one function: namespaces, NumPy aliases, parameters used as arrays."""

    def __init__(self, fn, numpy_names, host_functions=frozenset()):
        self.numpy = numpy_names
        self.host_functions = host_functions
        self.xp = {"xp"}
        self.nodes = list(_own_nodes(fn))
        for node in self.nodes:  # namespaces: xp = get_array_module(...) / self.xp
            if isinstance(node, ast.Assign) and self._is_namespace_expr(node.value):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.xp.add(t.id)
        params = set()
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = fn.args
            params = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs
                      if not (p.annotation is not None and self.is_numpy(p.annotation))}
            params -= {"self", "cls"}  # parameters annotated `np.ndarray` are host data
        self.entry_arrays = set()  # parameters used as arrays somewhere in the function
        for node in self.nodes:
            if isinstance(node, ast.Attribute) and node.attr in ARRAY_ATTRS \
                    and isinstance(node.value, ast.Name) and node.value.id in params:
                self.entry_arrays.add(node.value.id)
            if isinstance(node, ast.Call) and self._xp_function(node.func) and node.args \
                    and isinstance(node.args[0], ast.Name) and node.args[0].id in params \
                    and _attr_chain(node.func)[-1] not in XP_CREATION | HOST_XP:
                self.entry_arrays.add(node.args[0].id)

    def _is_namespace_expr(self, value) -> bool:
        if isinstance(value, ast.Call):
            f = value.func
            return (isinstance(f, ast.Name) and f.id == "get_array_module") or (
                isinstance(f, ast.Attribute) and f.attr == "get_array_module")
        return isinstance(value, ast.Attribute) and value.attr == "xp"

    def is_namespace(self, node) -> bool:
        return (isinstance(node, ast.Name) and node.id in self.xp) or (
            isinstance(node, ast.Attribute) and node.attr == "xp"
            and isinstance(node.value, ast.Name) and node.value.id == "self")

    def _xp_function(self, func) -> bool:
        return isinstance(func, ast.Attribute) and self.is_namespace(_xp_base(func))

    def is_numpy(self, func) -> bool:
        root = _root(func)
        return isinstance(root, ast.Name) and root.id in self.numpy

    def is_array(self, node, arrays, host=frozenset()) -> bool:
        """Whether ``node`` may be a backend array, given the names ``arrays`` holding
        arrays and the names ``host`` known to hold NumPy data here (or ALL)."""
        if host is ALL:
            return False
        rec = lambda n: self.is_array(n, arrays, host)  # noqa: E731
        if isinstance(node, ast.Name):
            return node.id in arrays and node.id not in host
        if isinstance(node, ast.Attribute):
            if node.attr in HOST_ATTRS or self.is_namespace(node.value) or self.is_numpy(node):
                return False
            return rec(node.value)
        if isinstance(node, ast.Subscript):
            return rec(node.value)
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and (f.id in HOST_CALLS or f.id in SYNC_CALLS
                                            or f.id in self.numpy or f.id in self.host_functions):
                return False
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id in ("self", "cls") and f.attr in self.host_functions:
                return False
            if self.is_numpy(f):
                return False
            if self._xp_function(f):
                return _attr_chain(f)[-1] not in HOST_XP
            args = list(node.args) + [k.value for k in node.keywords]
            if isinstance(f, ast.Attribute):
                if f.attr in SYNC_METHODS:
                    return False
                return rec(f.value) or any(rec(a) for a in args)
            return any(rec(a) for a in args)
        if isinstance(node, ast.Compare):
            if all(isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) for op in node.ops):
                return False
            return rec(node.left) or any(rec(c) for c in node.comparators)
        if isinstance(node, ast.BinOp):
            return rec(node.left) or rec(node.right)
        if isinstance(node, ast.UnaryOp):
            return not isinstance(node.op, ast.Not) and rec(node.operand)
        if isinstance(node, ast.BoolOp):
            return any(rec(v) for v in node.values)
        if isinstance(node, ast.IfExp):
            return rec(node.body) or rec(node.orelse)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(rec(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            return any(rec(v) for v in node.values)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            return rec(node.elt) or any(rec(g.iter) for g in node.generators)
        if isinstance(node, (ast.Starred, ast.NamedExpr)):
            return rec(node.value)
        return False


def _xp_base(func):
    """``xp`` of ``xp.f`` / ``xp.linalg.f`` (the node below the attribute chain)."""
    node = func
    while isinstance(node, ast.Attribute) and not (
            isinstance(node.value, ast.Name) or (isinstance(node.value, ast.Attribute)
                                                 and node.value.attr == "xp")):
        node = node.value
    return node.value if isinstance(node, ast.Attribute) else node


def _host_guard(test, scope: _Scope, positive=True):
    """Names that a true (``positive``) / false test proves to be NumPy data, or ALL."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) and positive:
        found = set()
        for v in test.values:
            g = _host_guard(v, scope)
            if g is ALL:
                return ALL
            found |= g
        return found
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        op, left, right = test.ops[0], test.left, test.comparators[0]
        want = (ast.Eq, ast.Is) if positive else (ast.NotEq, ast.IsNot)
        if not isinstance(op, want):
            return set()
        sides = (left, right)
        if any(isinstance(s, ast.Name) and s.id in scope.numpy for s in sides) and any(
                scope.is_namespace(s) for s in sides):
            return ALL  # xp is np
        for call, const in (sides, sides[::-1]):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == "backend_of" and isinstance(const, ast.Constant)
                    and const.value == "numpy" and call.args
                    and isinstance(call.args[0], ast.Name)):
                return {call.args[0].id}
        return set()
    if positive and isinstance(test, ast.Call) and isinstance(test.func, ast.Name) \
            and test.func.id == "isinstance" and len(test.args) == 2 \
            and isinstance(test.args[0], ast.Name) and isinstance(test.args[1], ast.Attribute) \
            and scope.is_numpy(test.args[1]):
        return {test.args[0].id}
    return set()


def _union(a, b):
    return ALL if a is ALL or b is ALL else set(a) | set(b)


def _bind(target, is_array: bool, arrays: set) -> None:
    """Record that ``target`` (a name or a tuple of names) now holds an array or not."""
    if isinstance(target, ast.Name):
        (arrays.add if is_array else arrays.discard)(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for t in target.elts:
            _bind(t, is_array, arrays)
    elif isinstance(target, ast.Starred):
        _bind(target.value, is_array, arrays)
    # x[i] = ... and obj.attr = ...: the container keeps its kind


def _ends_block(body) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break))


class _LeakFinder:
    """Walks one function in order, tracking which names hold backend arrays."""

    def __init__(self, path, source, scope: _Scope, findings):
        self.path, self.lines, self.scope, self.findings = path, source.splitlines(), scope, findings
        self.arrays = set(scope.entry_arrays)

    def is_array(self, node, host):
        return self.scope.is_array(node, self.arrays, host)

    def report(self, node, message):
        line = self.lines[node.lineno - 1].strip() if node.lineno <= len(self.lines) else ""
        self.findings.append(Finding(self.path, node.lineno, message, line))

    # --- statements -------------------------------------------------------------------
    def block(self, stmts, host):
        for stmt in stmts:
            self.stmt(stmt, host)
            if isinstance(stmt, ast.If) and _ends_block(stmt.body):
                host = _union(host, _host_guard(stmt.test, self.scope, positive=False))

    def stmt(self, node, host):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return  # analysed as its own scope
        if isinstance(node, ast.Raise):
            return  # the error path may read values back to explain itself
        if isinstance(node, ast.Assign):
            self.expr(node.value, host)
            for t in node.targets:
                self.expr(t, host)
                if isinstance(t, (ast.Tuple, ast.List)) and isinstance(
                        node.value, (ast.Tuple, ast.List)) and len(t.elts) == len(node.value.elts):
                    for te, ve in zip(t.elts, node.value.elts):
                        _bind(te, self.is_array(ve, host), self.arrays)
                else:
                    _bind(t, self.is_array(node.value, host), self.arrays)
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value, host)
                _bind(node.target, self.is_array(node.value, host), self.arrays)
            return
        if isinstance(node, ast.AugAssign):
            self.expr(node.value, host)
            grown = self.is_array(node.target, host) or self.is_array(node.value, host)
            _bind(node.target, grown, self.arrays)
            return
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            if isinstance(node, ast.While):
                self.truth(node.test, host)
                self.expr(node.test, host)
            else:
                self.expr(node.iter, host)
                _bind(node.target, self.is_array(node.iter, host), self.arrays)
            for _ in range(2):  # twice: names that become arrays late in the body
                self.block(node.body, host)
            self.block(node.orelse, host)
            return
        if isinstance(node, ast.If):
            self.truth(node.test, host)
            self.expr(node.test, host)
            before = set(self.arrays)
            self.block(node.body, _union(host, _host_guard(node.test, self.scope)))
            after_body, self.arrays = self.arrays, before
            self.block(node.orelse, host)
            if not _ends_block(node.body):
                self.arrays |= after_body
            return
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr, host)
                if item.optional_vars is not None:
                    _bind(item.optional_vars, self.is_array(item.context_expr, host), self.arrays)
            self.block(node.body, host)
            return
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.block(node.body, host)
            for handler in node.handlers:
                self.block(handler.body, host)
            self.block(node.orelse, host)
            self.block(node.finalbody, host)
            return
        if isinstance(node, ast.Assert):
            self.truth(node.test, host)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.stmt(child, host)
            elif isinstance(child, ast.expr):
                self.expr(child, host)

    # --- expressions ----------------------------------------------------------------
    def expr(self, node, host):
        s = self.scope
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.IfExp):
            self.truth(node.test, host)
            self.expr(node.test, host)
            self.expr(node.body, _union(host, _host_guard(node.test, s)))
            self.expr(node.orelse, host)
            return
        if isinstance(node, ast.BoolOp):
            guard = host
            for v in node.values:
                self.expr(v, guard)
                if isinstance(node.op, ast.And):
                    guard = _union(guard, _host_guard(v, s))
            for v in node.values[:-1]:
                self.truth(v, host)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value, host)
            _bind(node.target, self.is_array(node.value, host), self.arrays)
            return
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            saved = set(self.arrays)
            for g in node.generators:
                self.expr(g.iter, host)
                _bind(g.target, self.is_array(g.iter, host), self.arrays)
                for cond in g.ifs:
                    self.truth(cond, host)
                    self.expr(cond, host)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self.expr(part, host)
            self.arrays = saved
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.truth(node.operand, host)
        if isinstance(node, ast.FormattedValue) and self.is_array(node.value, host):
            self.report(node, "formats a backend array (a device-to-host sync)")
        if isinstance(node, ast.Call):
            self.call(node, host)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, host)
            elif isinstance(child, ast.keyword):
                self.expr(child.value, host)

    def truth(self, test, host):
        if self.is_array(test, host):
            self.report(test, "truth value of a backend array (implicit bool(): a hidden sync)")

    def call(self, node, host):
        s, f = self.scope, node.func
        args = list(node.args) + [k.value for k in node.keywords]
        if isinstance(f, ast.Attribute) and f.attr == "at" and isinstance(f.value, ast.Attribute) \
                and (s.is_numpy(f) or s.is_namespace(f.value.value)):
            self.report(node, "ufunc.at (np.add.at) is not portable; use a one-hot matmul, "
                              "take_along_axis or a scatter kernel")
        elif (isinstance(f, ast.Name) and f.id in s.numpy) or (
                isinstance(f, ast.Attribute) and s.is_numpy(f)):
            if any(self.is_array(a, host) for a in args):
                name = ".".join([_root(f).id] + _attr_chain(f))
                self.report(node, f"NumPy call {name}() on a backend array; use the xp "
                                  f"namespace (or gpunet.to_numpy where reading back is meant)")
        elif isinstance(f, ast.Name) and f.id in SYNC_CALLS:
            if any(self.is_array(a, host) for a in args):
                self.report(node, f"{f.id}() of a backend array (a hidden device-to-host sync)")
        elif isinstance(f, ast.Attribute) and f.attr in SYNC_METHODS:
            if self.is_array(f.value, host):
                self.report(node, f".{f.attr}() of a backend array (a hidden device-to-host sync)")


def device_leaks(path: str, source: str) -> list[Finding]:
    """Findings of the second kind (see the module docstring) in one module's source."""
    tree = ast.parse(source)
    numpy_names, host_functions = _numpy_aliases(tree), _host_functions(tree)
    findings: list[Finding] = []
    for fn in _scopes(tree):
        scope = _Scope(fn, numpy_names, host_functions)
        _LeakFinder(path, source, scope, findings).block(fn.body, frozenset())
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.message))


def xp_names(source: str) -> set[tuple[str, ...]]:
    """Attribute chains used on array namespaces, e.g. ``("reshape",)``, ``("linalg", "norm")``."""
    tree = ast.parse(source)
    numpy_names = _numpy_aliases(tree)
    used = set()
    for fn in _scopes(tree):
        scope = _Scope(fn, numpy_names)
        for node in scope.nodes:
            if isinstance(node, ast.Attribute) and scope.is_namespace(node.value):
                used.add((node.attr,))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and scope.is_namespace(node.value.value):
                used.add((node.value.attr, node.attr))
    return used


def resolve(namespace, chain: tuple[str, ...]) -> bool:
    """Whether ``namespace.<chain>`` exists (by introspection; no device needed)."""
    obj = namespace
    for name in chain:
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def generic_modules(root: Path, excluded: dict[str, str]) -> list[Path]:
    """``*.py`` under ``root/gpunet`` minus the ``excluded`` paths (files or ``dir/``)."""
    out = []
    for path in sorted((root / "gpunet").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(rel == e or (e.endswith("/") and rel.startswith(e)) for e in excluded):
            continue
        out.append(path)
    return out
