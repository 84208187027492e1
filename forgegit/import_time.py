"""The import-time rule of function files: an allow-list of what may run when a file is imported.

Importing a function file must run none of its own code: forgegit imports every file of a set to
check it, and other tools import them too. So the module level, class bodies, and the parts of a
`def`/`class` statement that Python evaluates when it runs (decorators, class bases and keywords,
default values, annotations) may only hold forms known to run no code of the file. Anything not
listed here is refused, so a new trick is refused by default instead of slipping through a deny-list.

The module level (and the bodies of the guards below) may hold only:
- a docstring (or any constant expression statement), `pass`, `import` and `from ... import`;
- `def` and `class` statements, checked as below;
- assignments `NAME = value`, `NAME: annotation = value` and `A, B = (x, y)` of values (below);
- `if __name__ == "__main__":` (its body never runs on import; its `else:` is checked),
  `if TYPE_CHECKING:`, `if sys.version_info >= (3, 11):`, `if sys.platform == "linux":`;
- `try:` whose handlers name built-in exceptions (`try: import x` / `except ImportError: x = None`).

A value is a literal (numbers, strings, bytes, None/True/False, `...`), a tuple/list/set/dict of
values, a name or a dotted name (`math.pi`), or arithmetic on number literals (`60 * 60`, `-1`,
`2 ** 31 - 1`). No calls, subscripts, f-strings, comparisons, boolean operators, comprehensions,
lambdas, walrus, conditional expressions, `await` or `yield`.

An annotation is a name, a dotted name, a string, a literal, `X | Y`, or a subscript of a (dotted)
name by annotations (`list[int]`, `Optional[str]`, `Callable[[int], str]`, `Literal["a", -1]`).

A decorator is one of `staticmethod`, `classmethod` (never over another decorator: that makes a
class property, whose getter runs when the attribute is read), `property` and `<property>.setter`
/ `.getter` / `.deleter`, `functools.lru_cache` / `cache` / `cached_property`, `dataclasses.dataclass`,
`typing.overload`, `abc.abstractmethod`; `lru_cache` and `dataclass` may be called with literal arguments.

A class has no keywords (no `metaclass=`), and its bases are built-in classes (`object`, `int`,
`dict`, `ValueError`, ...), `typing.NamedTuple` / `TypedDict` / `Protocol`, `abc.ABC`, or a class
defined earlier at the top of the same file. Its body holds docstrings, `pass`, methods, nested
classes and assignments as above, and never binds `__init_subclass__`, `__class_getitem__`,
`__set_name__`, `__mro_entries__` or `__prepare__` (hooks Python calls while building classes).

Names are resolved as Python would: `functools.lru_cache` only counts when `functools` is bound
once, by `import functools`; `property` only when nothing in the file rebinds it. The module may not
bind dunder names other than `__all__`, `__version__`, `__author__` and `__doc__` (a module
`__getattr__` runs when another file imports a missing name from it).

Together these leave no way to make an instance of a class of the file at import time, so no method
of the file can run by an operator, an attribute read, hashing or formatting either.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from typing import Optional, Union

Issue = tuple[int, str]  # (line, message)
Def = Union[ast.FunctionDef, ast.AsyncFunctionDef]

ALLOWED_AT_TOP = "only imports, def/class, constants and a docstring may sit there"

_BUILTIN_CLASSES = {"object", "int", "float", "complex", "str", "bytes", "bytearray", "tuple", "list", "dict",
                    "set", "frozenset"} | {
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
_SAFE_BASES = {f"builtins.{n}" for n in _BUILTIN_CLASSES} | {
    "typing.NamedTuple", "typing.TypedDict", "typing.Protocol", "abc.ABC"}
_DECORATORS = {
    "builtins.staticmethod", "builtins.classmethod", "builtins.property",
    "functools.lru_cache", "functools.cache", "functools.cached_property",
    "dataclasses.dataclass", "typing.overload", "abc.abstractmethod",
}
_CALLABLE_DECORATORS = {"functools.lru_cache", "dataclasses.dataclass"}  # with literal arguments
_PROPERTY_PARTS = {"setter", "getter", "deleter"}
_CLASS_HOOKS = {"__init_subclass__", "__class_getitem__", "__set_name__", "__mro_entries__", "__prepare__"}
_MODULE_DUNDERS = {"__all__", "__version__", "__author__", "__doc__"}
_BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
               ast.BitOr, ast.BitAnd, ast.BitXor, ast.RShift)
_BIG_OPS = (ast.Pow, ast.LShift)  # only with a plain literal on the left and a small one on the right
_MAX_EXPONENT = 1024
_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _unparse(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # an odd node ast cannot print back
        return "?"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(stmt: ast.stmt) -> str:
    try:
        lines = ast.unparse(stmt).splitlines()
    except Exception:
        return "?"
    text = lines[0] if lines else "?"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


# --------------------------------------------------------------------------- names and scopes


@dataclass
class _Scope:
    """The names a module or a class body binds: name -> what binds it ("import:mod.attr", "class", ...)."""

    bindings: dict[str, list[str]] = field(default_factory=dict)
    star_import: bool = False
    classes: dict[str, int] = field(default_factory=dict)  # top-level class name -> line

    def bind(self, name: str, how: str) -> None:
        self.bindings.setdefault(name, []).append(how)


def _collect(body: list[ast.stmt], scope: _Scope, *, top: bool) -> None:
    """Record every name body binds in scope (descending into if/try blocks, not into defs or classes)."""
    for stmt in body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    scope.bind(alias.asname, f"import:{alias.name}")
                else:
                    top_name = alias.name.split(".")[0]
                    scope.bind(top_name, f"import:{top_name}")
        elif isinstance(stmt, ast.ImportFrom):
            module = "." * stmt.level + (stmt.module or "")
            for alias in stmt.names:
                if alias.name == "*":
                    scope.star_import = True
                else:
                    scope.bind(alias.asname or alias.name, f"import:{module}.{alias.name}")
        elif isinstance(stmt, ast.ClassDef):
            scope.bind(stmt.name, "class")
            if top:
                scope.classes.setdefault(stmt.name, stmt.lineno)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope.bind(stmt.name, "def")
        elif isinstance(stmt, ast.Try):
            for handler in stmt.handlers:
                if handler.name:
                    scope.bind(handler.name, "except")
            for sub in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                _collect(sub, scope, top=False)
        elif isinstance(stmt, ast.If):
            _collect(stmt.body, scope, top=False)
            _collect(stmt.orelse, scope, top=False)
        else:
            for node in ast.walk(stmt):  # assignments, and anything else that binds (it is refused anyway)
                if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                    scope.bind(node.id, "assign")
                elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
                    scope.bind(node.target.id, "assign")


def _resolve(node: ast.expr, scopes: list[_Scope]) -> Optional[str]:
    """The dotted origin of a (dotted) name, e.g. `functools.lru_cache`, `builtins.property`, or
    `local.<Class>` for a class of the file; None when the file could have bound it to anything else."""
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, scopes)
        if base is None or base.startswith("local."):
            return None
        return f"{base}.{node.attr}"
    if not isinstance(node, ast.Name):
        return None
    for scope in scopes:
        hows = scope.bindings.get(node.id)
        if hows:
            if len(hows) != 1:
                return None
            how = hows[0]
            if how.startswith("import:") and not how.startswith("import:."):
                return how[len("import:"):]
            if how == "class" and scope is scopes[-1] and node.id in scope.classes:
                return f"local.{node.id}"
            return None
    if any(s.star_import for s in scopes):
        return None  # `from x import *` could have bound it
    return f"builtins.{node.id}"


# --------------------------------------------------------------------------- values and annotations


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, complex, bool)


def _is_arithmetic(node: ast.expr) -> bool:
    """True for arithmetic on number literals that stays small (`60 * 60`, `-1`, `2 ** 31 - 1`)."""
    if _is_number(node):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
        return _is_arithmetic(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        return _is_arithmetic(node.left) and _is_arithmetic(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _BIG_OPS):
        right = node.right
        return (_is_number(node.left) and isinstance(right, ast.Constant) and type(right.value) is int
                and abs(right.value) <= _MAX_EXPONENT)
    return False


def _number_problem(node: ast.expr) -> Optional[str]:
    if _is_arithmetic(node):
        return None
    return (f"`{_unparse(node)}` applies an operator to something other than number literals "
            f"(`**` and `<<` only to a number, by at most {_MAX_EXPONENT})")


def value_problem(node: ast.expr) -> Optional[str]:
    """None when evaluating node can run no code of the file, else why it could."""
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, ast.Name):
        return None
    if isinstance(node, ast.Attribute):
        return value_problem(node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else (
            f"`{_unparse(node)}` reads an attribute of an expression (only of a name)")
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                return f"`{_unparse(elt)}` unpacks a value"
            problem = value_problem(elt)
            if problem:
                return problem
        return None
    if isinstance(node, ast.Dict):
        for key, val in zip(node.keys, node.values):
            if key is None:
                return f"`**{_unparse(val)}` unpacks a value"
            problem = value_problem(key) or value_problem(val)
            if problem:
                return problem
        return None
    if isinstance(node, (ast.UnaryOp, ast.BinOp)):
        return _number_problem(node)
    return f"`{_unparse(node)}` is {_kind(node)}"


def _kind(node: ast.expr) -> str:
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (ast.Call, "a call"), (ast.Subscript, "a subscript"), (ast.JoinedStr, "an f-string"),
        (ast.Lambda, "a lambda"), (ast.NamedExpr, "an assignment expression"), (ast.Compare, "a comparison"),
        (ast.BoolOp, "a boolean operation"), (ast.IfExp, "a conditional expression"),
        ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "a comprehension"),
        ((ast.Await, ast.Yield, ast.YieldFrom), "an await or yield"), (ast.Starred, "an unpacking"),
    ]
    for types, text in kinds:
        if isinstance(node, types):
            return text
    return "not a literal, a name or a dotted name"


def annotation_problem(node: ast.expr, *, in_subscript: bool = False) -> Optional[str]:
    """None when node is a plain type annotation (evaluating it runs no code of the file), else why not."""
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(node.operand):
        return None  # Literal[-1]
    if isinstance(node, (ast.Name, ast.Attribute)):
        return value_problem(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return annotation_problem(node.left) or annotation_problem(node.right)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, (ast.Name, ast.Attribute)) or value_problem(node.value):
            return f"`{_unparse(node)}` subscripts an expression (only a name, e.g. list[int])"
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for arg in args:
            problem = annotation_problem(arg, in_subscript=True)
            if problem:
                return problem
        return None
    if in_subscript and isinstance(node, ast.List):  # Callable[[int, str], bool]
        for elt in node.elts:
            problem = annotation_problem(elt)
            if problem:
                return problem
        return None
    return f"`{_unparse(node)}` is {_kind(node)}" if isinstance(node, ast.expr) else "not an annotation"


# --------------------------------------------------------------------------- the checker


class _Checker:
    def __init__(self, module: ast.Module) -> None:
        self.module_scope = _Scope()
        _collect(module.body, self.module_scope, top=True)
        self.issues: list[Issue] = []

    def add(self, line: int, message: str) -> None:
        self.issues.append((line, message))

    # -- statements

    def body(self, body: list[ast.stmt], *, where: str = "at the top level") -> None:
        for stmt in body:
            self.statement(stmt, where)

    def statement(self, stmt: ast.stmt, where: str) -> None:
        scopes = [self.module_scope]
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._module_name(stmt.lineno, stmt.name, "defines")
            self.definition(stmt, scopes)
        elif isinstance(stmt, ast.ClassDef):
            self._module_name(stmt.lineno, stmt.name, "defines")
            self.class_def(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name != "*":
                    self._module_name(stmt.lineno, bound, "imports")
        elif isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            pass  # a docstring, a stray string or `...`: nothing runs
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            self.assignment(stmt, scopes, module=True)
        elif isinstance(stmt, ast.If) and where == "at the top level" and self._guard(stmt) is not None:
            kind = self._guard(stmt)
            if kind != "main":  # the body of `if __name__ == "__main__":` never runs on import
                self.body(stmt.body)
            self.body(stmt.orelse)
        elif isinstance(stmt, ast.Try) and where == "at the top level" and self._handlers_ok(stmt):
            for sub in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                self.body(sub)
        else:
            self.add(stmt.lineno, f"code {where} would run on import: `{_first_line(stmt)}` ({ALLOWED_AT_TOP})")

    def _module_name(self, line: int, name: str, verb: str) -> None:
        if _is_dunder(name) and name not in _MODULE_DUNDERS:
            self.add(line, f"the file {verb} `{name}` at the top level: a module may not bind dunder names "
                           f"other than {', '.join(sorted(_MODULE_DUNDERS))} (a module `__getattr__` runs code "
                           "when another file imports from it)")

    def _guard(self, stmt: ast.If) -> Optional[str]:
        """'main', 'type_checking' or 'version' for the `if` tests allowed at the top level, else None."""
        t, scopes = stmt.test, [self.module_scope]
        if isinstance(t, (ast.Name, ast.Attribute)) and _resolve(t, scopes) == "typing.TYPE_CHECKING":
            return "type_checking"
        if not (isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], _COMPARE_OPS)):
            return None
        left, right = t.left, t.comparators[0]
        if (isinstance(left, ast.Name) and left.id == "__name__" and isinstance(t.ops[0], ast.Eq)
                and isinstance(right, ast.Constant) and right.value == "__main__"
                and "__name__" not in self.module_scope.bindings):
            return "main"
        origin = _resolve(left, scopes) if isinstance(left, ast.Attribute) else None
        if origin == "sys.version_info" and _int_tuple(right):
            return "version"
        if origin == "sys.platform" and isinstance(right, ast.Constant) and isinstance(right.value, str):
            return "version"
        return None

    def _handlers_ok(self, stmt: ast.Try) -> bool:
        for handler in stmt.handlers:
            types = (handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]) if handler.type else []
            for t in types:
                origin = _resolve(t, [self.module_scope]) if isinstance(t, ast.Name) else None
                if origin is None or origin[len("builtins."):] not in _BUILTIN_EXCEPTIONS:
                    return False
        return True

    def assignment(self, stmt: Union[ast.Assign, ast.AnnAssign], scopes: list[_Scope], *, module: bool) -> None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        where = "at the top level" if module else "in a class body"
        names: list[str] = []
        for target in targets:
            if isinstance(target, ast.Name):
                names.append(target.id)
            elif (isinstance(target, (ast.Tuple, ast.List)) and isinstance(stmt, ast.Assign)
                  and all(isinstance(e, ast.Name) for e in target.elts)
                  and isinstance(stmt.value, (ast.Tuple, ast.List))
                  and len(stmt.value.elts) == len(target.elts)):
                names += [e.id for e in target.elts if isinstance(e, ast.Name)]
            else:
                self.add(stmt.lineno, f"code {where} would run on import: `{_first_line(stmt)}` "
                                      "(assign only to plain names, and unpack only a tuple written out)")
                return
        for name in names:
            if module:
                self._module_name(stmt.lineno, name, "assigns")
            elif name in _CLASS_HOOKS:
                self.add(stmt.lineno, f"the class body binds `{name}`: Python calls it while building classes")
        if isinstance(stmt, ast.AnnAssign):
            problem = annotation_problem(stmt.annotation)
            if problem:
                self.add(stmt.lineno, f"the annotation of `{_unparse(stmt.target)}` would run code on import: {problem}")
        if stmt.value is not None:
            problem = value_problem(stmt.value)
            if problem:
                self.add(stmt.lineno, f"`{_unparse(stmt)}` is not a constant and would run code on import: {problem}")

    # -- def and class

    def definition(self, stmt: Def, scopes: list[_Scope], properties: Optional[set[str]] = None) -> None:
        """Decorators, defaults and annotations of a def: Python evaluates them when the def runs."""
        self.decorators(stmt, scopes, properties)
        type_params = getattr(stmt, "type_params", None)
        if type_params:
            self.add(stmt.lineno, f"`{stmt.name}` has type parameters: they are not supported in function files")
        a = stmt.args
        every = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]
        parts: list[tuple[str, ast.expr, Optional[str]]] = []
        for arg in every:
            if arg.annotation is not None:
                parts.append(("annotation", arg.annotation, annotation_problem(arg.annotation)))
        if stmt.returns is not None:
            parts.append(("return annotation", stmt.returns, annotation_problem(stmt.returns)))
        for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
            parts.append(("default", default, value_problem(default)))
        for what, node, problem in parts:
            if problem:
                self.add(node.lineno, f"{what} `{_unparse(node)}` of {stmt.name} would run code on import: {problem}")

    def decorators(self, stmt: Union[Def, ast.ClassDef], scopes: list[_Scope], properties: Optional[set[str]]) -> None:
        origins: list[Optional[str]] = []
        for node in stmt.decorator_list:
            origin, problem = self._decorator(node, scopes, properties)
            origins.append(origin)
            if problem:
                self.add(node.lineno, f"decorator `{_unparse(node)}` of {stmt.name} would run code on import: {problem}")
        for i, origin in enumerate(origins[:-1]):
            if origin == "builtins.classmethod":
                node = stmt.decorator_list[i]
                self.add(node.lineno, f"decorator `{_unparse(node)}` of {stmt.name} would run code on import: "
                                      "classmethod over another decorator (a class property runs its getter "
                                      "whenever the attribute is read)")

    def _decorator(self, node: ast.expr, scopes: list[_Scope], properties: Optional[set[str]]
                   ) -> tuple[Optional[str], Optional[str]]:
        allowed = ("only staticmethod, classmethod, property, functools.lru_cache/cache/cached_property, "
                   "dataclasses.dataclass, typing.overload and abc.abstractmethod")
        if (isinstance(node, ast.Attribute) and node.attr in _PROPERTY_PARTS and isinstance(node.value, ast.Name)
                and properties is not None and node.value.id in properties):
            return "property-part", None
        target = node.func if isinstance(node, ast.Call) else node
        if not isinstance(target, (ast.Name, ast.Attribute)):
            return None, f"it is {_kind(target)} ({allowed})"
        origin = _resolve(target, scopes)
        if origin not in _DECORATORS:
            return origin, f"not an allowed decorator ({allowed}, not rebound in the file)"
        if isinstance(node, ast.Call):
            if origin not in _CALLABLE_DECORATORS:
                return origin, f"`{_unparse(target)}` takes no arguments here"
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if not isinstance(arg, ast.Constant) and not _is_literal(arg):
                    return origin, f"its arguments must be literals, not `{_unparse(arg)}`"
            if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
                return origin, "its arguments must be literals (no unpacking)"
        return origin, None

    def class_def(self, stmt: ast.ClassDef, outer: Optional[list[_Scope]] = None) -> None:
        scope = _Scope()
        _collect(stmt.body, scope, top=False)
        scopes_outside = outer or [self.module_scope]
        self.decorators(stmt, scopes_outside, None)
        for k in stmt.keywords:
            shown = f"{k.arg}={_unparse(k.value)}" if k.arg else f"**{_unparse(k.value)}"
            self.add(k.value.lineno, f"class keyword `{shown}` of {stmt.name} would run code on import "
                                     "(no metaclass or other class keywords)")
        for base in stmt.bases:
            origin = _resolve(base, scopes_outside) if isinstance(base, (ast.Name, ast.Attribute)) else None
            local_ok = (origin is not None and origin.startswith("local.")
                        and self.module_scope.classes.get(origin[len("local."):], stmt.lineno) < stmt.lineno)
            if origin not in _SAFE_BASES and not local_ok:
                self.add(base.lineno, f"base class `{_unparse(base)}` of {stmt.name} would run code on import: only "
                                      "built-in classes, typing.NamedTuple/TypedDict/Protocol, abc.ABC or a class "
                                      "defined above in this file")
        self.class_body(stmt, [scope, self.module_scope])

    def class_body(self, cls: ast.ClassDef, scopes: list[_Scope]) -> None:
        properties: set[str] = set()
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name in _CLASS_HOOKS:
                    self.add(stmt.lineno, f"`{cls.name}.{stmt.name}` would run code on import: Python calls it "
                                          "while building classes")
                self.definition(stmt, scopes, properties)
                if any(_is_property(d, scopes, properties) for d in stmt.decorator_list):
                    properties.add(stmt.name)
                else:
                    properties.discard(stmt.name)
            elif isinstance(stmt, ast.ClassDef):
                if stmt.name in _CLASS_HOOKS:
                    self.add(stmt.lineno, f"the class body binds `{stmt.name}`: Python calls it while building classes")
                self.class_def(stmt, [scopes[0], self.module_scope])
                properties.discard(stmt.name)
            elif isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                pass
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                self.assignment(stmt, scopes, module=False)
                for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]):
                    for n in ast.walk(target):
                        if isinstance(n, ast.Name):
                            properties.discard(n.id)
            else:
                self.add(stmt.lineno, f"code in a class body would run on import: `{_first_line(stmt)}` "
                                      "(only methods, classes, constants and a docstring may sit there)")


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except Exception:
        return False
    return True


def _is_property(node: ast.expr, scopes: list[_Scope], properties: set[str]) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in _PROPERTY_PARTS and isinstance(node.value, ast.Name):
        return node.value.id in properties
    return isinstance(node, ast.Name) and _resolve(node, scopes) == "builtins.property"


def _int_tuple(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    return isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) and type(e.value) is int for e in node.elts)


def problems(module: ast.Module) -> list[Issue]:
    """(line, message) for everything in module that would run the file's own code when it is imported."""
    checker = _Checker(module)
    checker.body(module.body)
    return checker.issues
