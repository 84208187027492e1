"""Function files (`functions/<name>.py`): the check rules, and the OpenAI tool schema from type hints.

Everything here reads source with `ast` only: a function file is never imported or run.
"""
from __future__ import annotations

import ast
import keyword
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from . import import_time
from .errors import ForgegitError

MAX_NAME_LENGTH = 64  # OpenAI's limit on a tool name
MAX_FILE_BYTES = 64 * 1024  # one function file (its docstring goes into every agent request)
MAX_TOTAL_BYTES = 512 * 1024  # all of functions/ together
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CODING_RE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_UTF8_NAMES = {"utf-8", "utf8", "utf_8", "utf-8-sig", "utf_8_sig"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a function file, at a 1-based line."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class FunctionSpec:
    """A checked function file: its tool name, description and JSON-schema parameters."""

    name: str
    path: str
    source: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def tool(self) -> dict[str, Any]:
        """The OpenAI `tools=[...]` entry for this function."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class FunctionFileError(ForgegitError):
    """Function files break check rules; `.problems` lists every problem found. The message is the first
    problem (and how many more), unless a message saying where (a revision) is given."""

    def __init__(self, problems: list[Problem], message: str = "") -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(message or f"{problems[0]}{more}")
        self.problems = problems


class UnsupportedType(ForgegitError):
    """A type annotation that has no JSON-schema equivalent here."""


# --------------------------------------------------------------------------- names


# Files that tools find and run on their own: a function file by such a name would run outside the sandbox.
_RUN_BY_TOOLS = {
    "conftest": "pytest imports every conftest.py it finds, outside any sandbox",
    "sitecustomize": "Python imports sitecustomize.py at start-up when it is on the path",
    "usercustomize": "Python imports usercustomize.py at start-up when it is on the path",
    "setup": "packaging tools run setup.py",
    "noxfile": "nox runs noxfile.py",
    "__main__": "`python -m` and `python <directory>` run __main__.py",
    "__init__": "__init__.py makes functions/ a package that runs on import",
}
PYTHON_TOOL = "python"  # the agent's built-in tool (see agent.py)


def reserved_name_reason(name: str) -> Optional[str]:
    """Why name is reserved (a file tools run on their own, or the agent's built-in tool), else None."""
    lower = name.lower()
    file = f"functions/{name}.py"
    if lower in _RUN_BY_TOOLS:
        return f"{file} would run on its own: {_RUN_BY_TOOLS[lower]}"
    if lower.startswith("test_") or lower.endswith("_test"):
        return f"{file} would run on its own: pytest collects and runs test_*.py and *_test.py files"
    if lower == PYTHON_TOOL:
        return f"{file} would shadow the agent's built-in `{PYTHON_TOOL}` tool"
    return None


def validate_name(name: str) -> Optional[str]:
    """None if `name` is safe as a function (and file) name, else why not."""
    if not isinstance(name, str) or not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is longer than {MAX_NAME_LENGTH} characters"
    if "/" in name or "\\" in name or os.sep in name:
        return "the name contains a path separator"
    if not _NAME_RE.match(name):
        return "the name must be ASCII letters, digits and underscores, not starting with a digit"
    if keyword.iskeyword(name):
        return f"`{name}` is a Python keyword"
    reserved = reserved_name_reason(name)
    if reserved:
        return reserved
    if name.startswith("_"):
        return "the name starts with an underscore (that makes it private)"
    if name in sys.stdlib_module_names:
        return f"`{name}.py` would shadow the standard-library module `{name}`"
    return None


# --------------------------------------------------------------------------- schema

_SIMPLE = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "list": "array", "dict": "object"}
_TYPING_ALIASES = {"List": "list", "Dict": "dict"}
_TYPING_MODULES = {"typing", "t", "typing_extensions"}
_SUPPORTED = "int, float, str, bool, list[...], dict[str, ...], Optional[...], Union[...], Literal[...] or X | None"


def _type_name(node: ast.expr) -> Optional[str]:
    """`int` for `int`, `Optional` for `typing.Optional`; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _TYPING_MODULES:
        return node.attr
    return None


def _subscript_args(node: ast.Subscript) -> list[ast.expr]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


def _union(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema accepting any of members: a type list when it can, else anyOf."""
    flat: list[dict[str, Any]] = []
    for m in members:
        for sub in m.get("anyOf", [m]) if set(m) == {"anyOf"} else [m]:
            if sub not in flat:
                flat.append(sub)
    if len(flat) == 1:
        return flat[0]
    types: list[str] = []
    for m in flat:
        t = m.get("type")
        for name in t if isinstance(t, list) else [t]:
            if isinstance(name, str) and name not in types:
                types.append(name)
    if all(set(m) == {"type"} for m in flat):
        return {"type": types}
    others = [m for m in flat if m != {"type": "null"}]
    if len(others) == 1 and len(flat) == 2 and isinstance(others[0].get("type"), str):
        merged = dict(others[0])
        merged["type"] = [merged["type"], "null"]
        if "enum" in merged and None not in merged["enum"]:
            merged["enum"] = [*merged["enum"], None]
        return merged
    return {"anyOf": flat}


def _literal_value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, float, bool))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if type(value) is int or type(value) is float:  # not bool (an int subclass)
            return -value
    raise UnsupportedType("Literal[...] values must be strings, numbers, booleans or None")


def _literal(args: list[ast.expr]) -> dict[str, Any]:
    values: list[Any] = []
    for a in args:
        v = _literal_value(a)
        if not any(v == w and type(v) is type(w) for w in values):
            values.append(v)
    kinds = {type(v) for v in values}
    types = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    names = [types[k] for k in (str, bool, int, float, type(None)) if k in kinds]
    if "integer" in names and "number" in names:
        names.remove("integer")
    return {"type": names[0] if len(names) == 1 else names, "enum": values}


def _subscript_schema(base: str, args: list[ast.expr]) -> dict[str, Any]:
    base = _TYPING_ALIASES.get(base, base)
    if base == "list":
        if len(args) != 1:
            raise UnsupportedType("list[...] takes one item type, e.g. list[int]")
        return {"type": "array", "items": schema_for_annotation(args[0])}
    if base == "dict":
        if len(args) != 2:
            raise UnsupportedType("dict[...] takes a key and a value type, e.g. dict[str, int]")
        if _type_name(args[0]) != "str":
            raise UnsupportedType("dict keys must be str (JSON object keys are strings)")
        return {"type": "object", "additionalProperties": schema_for_annotation(args[1])}
    if base == "Optional":
        if len(args) != 1:
            raise UnsupportedType("Optional[...] takes one type, e.g. Optional[int]")
        return _union([schema_for_annotation(args[0]), {"type": "null"}])
    if base == "Union":
        return _union([schema_for_annotation(a) for a in args])
    if base == "Literal":
        return _literal(args)
    raise UnsupportedType(f"unsupported type `{base}[...]`: use {_SUPPORTED}")


def schema_for_annotation(node: ast.expr) -> dict[str, Any]:
    """The JSON schema of a parameter's type annotation; UnsupportedType if it has none."""
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation: "int"
        try:
            inner = ast.parse(node.value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise UnsupportedType(f"the quoted annotation {node.value[:80]!r} is not a type") from exc
        return schema_for_annotation(inner)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([schema_for_annotation(node.left), schema_for_annotation(node.right)])
    if isinstance(node, ast.Subscript):
        base = _type_name(node.value)
        if base is None:
            raise UnsupportedType(f"unsupported type `{ast.unparse(node)}`: use {_SUPPORTED}")
        return _subscript_schema(base, _subscript_args(node))
    name = _type_name(node)
    if name == "None":
        return {"type": "null"}
    name = _TYPING_ALIASES.get(name or "", name)
    if name in _SIMPLE:
        return {"type": _SIMPLE[name]}
    raise UnsupportedType(f"unsupported type `{_unparse(node)}`: use {_SUPPORTED}")


def _unparse(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # an odd node ast cannot print back
        return "?"
    return text if len(text) <= 60 else text[:57] + "..."


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    """schema, also accepting null (keeping its description and default)."""
    extra: dict[str, Any] = {k: schema.pop(k) for k in ("description", "default") if k in schema}
    return {**_union([schema, {"type": "null"}]), **extra}


def _accepts_null(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    return any(_accepts_null(m) for m in schema.get("anyOf", []))


# --------------------------------------------------------------------------- docstrings

_ARGS_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_DROPPED_SECTIONS = _ARGS_SECTIONS | {"returns", "return", "yields", "yield"}
_SECTION_RE = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_ARG_RE = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _sections(doc: str) -> Iterator[tuple[Optional[str], list[str]]]:
    """(Args/Returns-like section name, or None for other text; its lines) in order, for a cleaned docstring."""
    name: Optional[str] = None
    lines: list[str] = []
    for line in doc.splitlines():
        header = _SECTION_RE.match(line)
        if header and _indent(line) == 0 and header.group(1).strip().lower() in _DROPPED_SECTIONS:
            yield name, lines
            name, lines = header.group(1).strip().lower(), []
        elif name is not None and line.strip() and _indent(line) == 0:
            yield name, lines
            name, lines = None, [line]
        else:
            lines.append(line)
    yield name, lines


def split_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description without the Args/Returns sections, {parameter: description from Args:})."""
    kept: list[str] = []
    params: dict[str, str] = {}
    for name, lines in _sections(doc):
        if name in _ARGS_SECTIONS:
            params.update(_parse_args(lines))
        if name is None:
            kept.extend(lines)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in kept))
    return text.strip(), params


def _parse_args(lines: list[str]) -> dict[str, str]:
    entries = [line for line in lines if line.strip()]
    if not entries:
        return {}
    base = _indent(entries[0])
    params: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    for line in entries:
        m = _ARG_RE.match(line.strip()) if _indent(line) <= base else None
        if m:
            current = params.setdefault(m.group(1), [])
            current.append(m.group(2).strip())
        elif current is not None:
            current.append(line.strip())
    return {k: " ".join(p for p in v if p) for k, v in params.items()}


# --------------------------------------------------------------------------- check rules

def _public_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [
        s for s in tree.body
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and not s.name.startswith("_")
    ]


def _shape_problems(tree: ast.Module, path: str, name: str) -> tuple[list[Problem], Optional[ast.FunctionDef]]:
    """The one-public-function rule; returns the function to check further when there is one."""
    public = _public_functions(tree)
    matching = [f for f in public if f.name == name]
    problems: list[Problem] = []
    if matching:
        for f in public:
            if f.name != name:
                problems.append(Problem(
                    path, f.lineno, f"only one public function per file: rename `{f.name}` to `_{f.name}` "
                    f"(a private helper) or move it to functions/{f.name}.py",
                ))
        for f in matching[1:]:
            problems.append(Problem(path, f.lineno, f"`{name}` is defined again (first on line {matching[0].lineno})"))
    elif len(public) == 1:
        problems.append(Problem(path, public[0].lineno, f"the public function `{public[0].name}` must be named `{name}` to match the file name"))
        matching = public
    elif public:
        found = ", ".join(f"`{f.name}`" for f in public)
        problems.append(Problem(path, public[0].lineno, f"no public function `{name}` (the file name); found {found}"))
    else:
        problems.append(Problem(path, 1, f"no public function: define `def {name}(...)` in this file"))
    fn = matching[0] if matching else None
    if isinstance(fn, ast.AsyncFunctionDef):
        problems.append(Problem(path, fn.lineno, f"`{fn.name}` must be a plain `def`, not `async def`"))
        return problems, None
    return problems, fn


def _default_value(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) for a JSON-able literal default, else (False, None)."""
    try:
        value = ast.literal_eval(node)
    except Exception:  # not a literal (a call, a name, ...) or a literal ast cannot evaluate
        return False, None
    return _json_able(value), _to_json_value(value)


def _json_able(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # JSON has no inf/nan
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_able(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_able(v) for k, v in value.items())
    return False


def _to_json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    return value


@dataclass
class _Param:
    name: str
    node: ast.arg
    default: Optional[ast.expr]


def _params(fn: ast.FunctionDef) -> list[_Param]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    defaults: list[Optional[ast.expr]] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = [_Param(p.arg, p, d) for p, d in zip(positional, defaults)]
    params += [_Param(p.arg, p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return params


_BUILTIN_TYPES = {"int", "float", "str", "bool", "list", "dict", "None"}
_TYPING_NAMES = {"Optional", "Union", "Literal", "List", "Dict"}


def _bound_names(body: list[ast.stmt]) -> Optional[set[str]]:
    """Names the module binds at the top level; None when a `*` import makes that unknowable."""
    names: set[str] = set()
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(stmt, (ast.If, ast.Try)):
            for sub in (stmt.body, stmt.orelse, getattr(stmt, "finalbody", [])):
                inner = _bound_names(sub)
                if inner is None:
                    return None
                names |= inner
    return names


def _unbound_problem(annotation: ast.expr, bound: set[str]) -> Optional[str]:
    """Why evaluating annotation would fail with a NameError on import, if it would."""
    for n in ast.walk(annotation):
        if isinstance(n, ast.Name) and n.id not in _BUILTIN_TYPES and n.id not in bound:
            if n.id in _TYPING_NAMES:
                return f"`{n.id}` is not imported (add `from typing import {n.id}`)"
            return f"`{n.id}` is not defined"
    return None


def _signature_problems(fn: ast.FunctionDef, path: str, bound: Optional[set[str]] = None) -> list[Problem]:
    problems: list[Problem] = []
    if not (ast.get_docstring(fn) or "").strip():
        problems.append(Problem(path, fn.lineno, f"`{fn.name}` has no docstring (it is the tool's description for the model)"))
    a = fn.args
    for arg in a.posonlyargs:
        problems.append(Problem(path, arg.lineno, f"parameter `{arg.arg}` is positional-only: tools are called with keyword arguments"))
    for star, star_arg in (("*", a.vararg), ("**", a.kwarg)):
        if star_arg is not None:
            problems.append(Problem(path, star_arg.lineno, f"`{star}{star_arg.arg}` is not allowed: a tool's parameters must be named"))
    for p in _params(fn):
        if p.node.annotation is None:
            problems.append(Problem(path, p.node.lineno, f"parameter `{p.name}` has no type annotation (it gives the tool's JSON schema)"))
        else:
            try:
                schema_for_annotation(p.node.annotation)
                unbound = _unbound_problem(p.node.annotation, bound) if bound is not None else None
            except UnsupportedType as exc:
                unbound = str(exc)
            if unbound:
                problems.append(Problem(path, p.node.annotation.lineno, f"parameter `{p.name}`: {unbound}"))
        if p.default is not None and not _default_value(p.default)[0]:
            problems.append(Problem(
                path, p.default.lineno,
                f"the default of parameter `{p.name}` must be a literal (a number, string, bool, None, list or dict)",
            ))
    return problems


def size_problem(path: str, size: int) -> Optional[Problem]:
    """The problem of a function file of size bytes when it is over MAX_FILE_BYTES, else None."""
    if size <= MAX_FILE_BYTES:
        return None
    return Problem(path, 1, f"{path} is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes "
                            f"({MAX_FILE_BYTES // 1024} KiB) for one function file")


def total_size_problem(sizes: dict[str, int]) -> Optional[Problem]:
    """The problem when the files {path: size} together are over MAX_TOTAL_BYTES (on the file that crosses it)."""
    total = 0
    for path, size in sizes.items():
        total += size
        if total > MAX_TOTAL_BYTES:
            whole = sum(sizes.values())
            return Problem(path, 1, f"the function files total {whole:,} bytes with {path}, over the limit of "
                                    f"{MAX_TOTAL_BYTES:,} bytes ({MAX_TOTAL_BYTES // 1024} KiB) for all of them")
    return None


def _size(source: bytes | str) -> int:
    return len(source) if isinstance(source, bytes) else len(source.encode("utf-8", "surrogatepass"))


def _decode(path: str, source: bytes | str) -> tuple[Optional[str], list[Problem]]:
    """The source as text, or the problem that prevents reading it as UTF-8 Python."""
    too_big = size_problem(path, _size(source))
    if too_big:
        return None, [too_big]  # not even parsed
    if isinstance(source, str):
        text = source[1:] if source.startswith("\ufeff") else source
    else:
        for lineno, raw_line in enumerate(source.splitlines()[:2], 1):
            m = _CODING_RE.match(raw_line)
            if m and m.group(1).decode("ascii", "replace").lower() not in _UTF8_NAMES:
                enc = m.group(1).decode("ascii", "replace")
                return None, [Problem(path, lineno, f"the file declares encoding `{enc}`: function files must be UTF-8")]
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            return None, [Problem(path, line, f"not valid UTF-8 (byte 0x{source[exc.start]:02x}): function files must be UTF-8 text")]
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        return None, [Problem(path, line, "the file contains a null byte (is it a binary file?)")]
    if not text.strip():
        return None, [Problem(path, 1, "the file is empty: it must define one public function")]
    return text, []


def _parse(path: str, text: str) -> tuple[Optional[ast.Module], list[Problem]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences: not ours to report
            return ast.parse(text, filename=path), []
    except SyntaxError as exc:
        return None, [Problem(path, max(1, exc.lineno or 1), f"syntax error: {exc.msg}")]
    except (RecursionError, MemoryError):
        return None, [Problem(path, 1, "the file is too deeply nested to parse")]
    except Exception as exc:  # e.g. a lone surrogate in a str source
        return None, [Problem(path, 1, f"cannot parse the file: {exc}")]


def _stem(path: str) -> str:
    base = os.path.basename(path.replace("\\", "/").rstrip("/"))
    return base[:-3] if base.endswith(".py") else base


def check_source(path: str, source: bytes | str, expected_name: Optional[str] = None) -> list[Problem]:
    """Every check-rule problem of one function file's source, sorted by line (empty when it is fine)."""
    name = expected_name if expected_name is not None else _stem(path)
    text, problems = _decode(path, source)
    if text is None:
        return problems
    tree, problems = _parse(path, text)
    if tree is None:
        return problems
    try:
        problems = _tree_problems(tree, path, name)
    except RecursionError:
        problems = [Problem(path, 1, "the file is too deeply nested to check")]
    return sorted(problems, key=lambda p: p.line)


def _tree_problems(tree: ast.Module, path: str, name: str) -> list[Problem]:
    problems: list[Problem] = []
    reason = validate_name(name)
    if reason:
        problems.append(Problem(path, 1, f"`{name}` cannot be a function name: {reason}"))
    problems += [Problem(path, line, message) for line, message in import_time.problems(tree)]
    shape, fn = _shape_problems(tree, path, name)
    problems += shape
    if fn is not None:
        problems += _signature_problems(fn, path, _bound_names(tree.body))
    return problems


# --------------------------------------------------------------------------- files on disk


def expand_paths(paths: list[str]) -> list[str]:
    """The files `check_paths(paths)` looks at: a directory means its *.py files; no duplicates."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p) and not p.endswith(".py"):
            try:
                files += sorted(str(c) for c in Path(p).iterdir() if c.name.endswith(".py"))
            except OSError:
                files.append(p)  # _read reports it
        else:
            files.append(p)
    return list(dict.fromkeys(files))


SYMLINK_MESSAGE = "a symbolic link: forgegit only loads regular files from functions/ (replace it with the file itself)"


def _read(path: str) -> tuple[Optional[bytes], Optional[Problem]]:
    if os.path.islink(path):
        return None, Problem(path, 1, f"{path} is {SYMLINK_MESSAGE}")
    if not os.path.lexists(path):
        return None, Problem(path, 1, "no such file")
    if os.path.isdir(path):
        return None, Problem(path, 1, "a directory, not a function file")
    if not os.path.isfile(path):
        return None, Problem(path, 1, "not a regular file")
    if not path.endswith(".py"):
        return None, Problem(path, 1, "function files must be named <name>.py")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # a symlink swapped in since: refused
        with os.fdopen(fd, "rb") as f:
            too_big = size_problem(path, os.fstat(f.fileno()).st_size)
            if too_big:
                return None, too_big  # not read into memory
            return f.read(MAX_FILE_BYTES + 1), None
    except OSError as exc:
        return None, Problem(path, 1, f"cannot read the file: {exc.strerror or exc}")


def check_paths(paths: list[str]) -> list[Problem]:
    """check_source for every file of paths (directories mean their *.py files), plus unreadable paths,
    symbolic links and the total size of the files."""
    problems: list[Problem] = []
    sizes: dict[str, int] = {}
    for p in paths:
        if os.path.isdir(p) and os.path.islink(p):
            problems.append(Problem(p, 1, f"{p} is {SYMLINK_MESSAGE}"))
    for path in expand_paths(paths):
        data, problem = _read(path)
        if data is not None:
            sizes[path] = len(data)
        problems += [problem] if problem else check_source(path, data or b"")
    total = total_size_problem(sizes)
    return problems + ([total] if total else [])


# --------------------------------------------------------------------------- specs


def parse_function(path: str, source: bytes | str) -> FunctionSpec:
    """The tool spec of a function file; FunctionFileError (with .problems) if it breaks a rule."""
    problems = check_source(path, source)
    if problems:
        raise FunctionFileError(problems)
    text, _ = _decode(path, source)
    tree = _parse(path, text or "")[0]
    assert text is not None and tree is not None  # check_source passed
    name = _stem(path)
    fn = next(s for s in _public_functions(tree) if s.name == name)
    assert isinstance(fn, ast.FunctionDef)
    description, arg_docs = split_docstring(ast.get_docstring(fn) or "")
    return FunctionSpec(name=name, path=path, source=text, description=description, parameters=_parameters(fn, arg_docs))


def _parameters(fn: ast.FunctionDef, arg_docs: dict[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in _params(fn):
        assert p.node.annotation is not None
        schema = dict(schema_for_annotation(p.node.annotation))
        if p.name in arg_docs and arg_docs[p.name]:
            schema["description"] = arg_docs[p.name]
        if p.default is not None:
            schema["default"] = _default_value(p.default)[1]
            if schema["default"] is None and not _accepts_null(schema):  # `x: int = None`
                schema = _with_null(schema)
        elif not _accepts_null(schema):
            required.append(p.name)
        properties[p.name] = schema
    return {"type": "object", "properties": properties, "required": required}


def load_specs(files: dict[str, bytes], root: str = "functions") -> tuple[list[FunctionSpec], list[Problem]]:
    """Specs of the good files of {file name: bytes} (sorted by name) and the problems of the bad ones."""
    specs: list[FunctionSpec] = []
    problems: list[Problem] = []
    paths = {f: f"{root.rstrip('/')}/{f}" if root else f for f in sorted(files)}
    total = total_size_problem({paths[f]: len(files[f]) for f in paths})
    if total:
        problems.append(total)
    for file_name in sorted(files):
        path = paths[file_name]
        if not file_name.endswith(".py"):
            problems.append(Problem(path, 1, "function files must be named <name>.py"))
            continue
        try:
            specs.append(parse_function(path, files[file_name]))
        except FunctionFileError as exc:
            problems += exc.problems
    specs.sort(key=lambda s: s.name)
    return specs, problems
