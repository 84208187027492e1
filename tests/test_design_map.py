"""DESIGN.md's module map tells the truth: every module it names exists, every module of the package is in
it, and every name in its key-API column exists where it says, with the parameters it lists.

The key-API column's convention: each backticked span is a name of the row's module(s): `name`,
`name(params)`, `Class.attr(params)`, or `.attr(params)` for an attribute of the last class the row
named (`Class(...)` or `Class.attr`, not after `->`); `await ` may lead, and a span that is not a name (a return shape
like `{file: error}`) is prose. Listed parameters must exist, positional ones in order; unless `...` is
among them, every required parameter must be listed.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "DESIGN.md"
PACKAGE = ROOT / "forgegit"
NOT_MAPPED = {"__init__.py", "__main__.py", "cli.py"}  # the CLI is named above the table
NAME = re.compile(r"(?P<name>\.?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\((?P<params>.*)\))?")


@dataclass
class Row:
    """One row of the map: its line in DESIGN.md, its modules and its key-API cell."""

    line: int
    modules: list[str]
    api: str


@dataclass
class Mention:
    """One backticked name of a key-API cell, with the class a leading dot refers to."""

    row: Row
    text: str
    owner: Optional[str]
    name: str
    params: Optional[str]


def map_rows() -> list[Row]:
    rows = []
    for i, line in enumerate(DESIGN.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 3 or cells[0] == "module" or set(cells[0]) <= {"-"}:
            continue
        modules = re.findall(r"`([\w/]+\.py)`", cells[0])
        assert modules, f"DESIGN.md:{i}: a map row names no module: {line}"
        rows.append(Row(i, modules, cells[2]))
    return rows


def mentions(row: Row) -> list[Mention]:
    out: list[Mention] = []
    owner: Optional[str] = None
    for found in re.finditer(r"`([^`]+)`", row.api):
        span = found.group(1)
        returned = row.api[:found.start()].rstrip().endswith("->")
        text = span.removeprefix("await ").strip()
        m = NAME.fullmatch(text)
        if m is None:
            continue  # prose: a return shape, a literal
        name, params = m.group("name"), m.group("params")
        if name.startswith("."):  # without a class before it, resolve() names the mistake
            out.append(Mention(row, span, owner, name[1:] if owner else name, params))
            continue
        head = name.split(".")[0]
        if head[:1].isupper() and ("." in name or params is not None) and not returned:
            owner = head
        out.append(Mention(row, span, None, name, params))
    return out


def import_module(path: str) -> ModuleType:
    return importlib.import_module("forgegit." + path.removesuffix(".py").replace("/", "."))


def resolve(mention: Mention) -> object:
    """The object a mention names, looked up in its row's modules; AssertionError naming what is missing."""
    where = f"DESIGN.md:{mention.row.line}: `{mention.text}`"
    assert not mention.name.startswith("."), f"{where}: no class named before it in its row"
    parts = ([mention.owner] if mention.owner else []) + mention.name.split(".")
    for path in mention.row.modules:
        try:
            module = import_module(path)
        except ImportError as exc:  # an optional extra that is not installed
            pytest.skip(f"{path} cannot be imported here: {exc}")
        if hasattr(module, parts[0]):
            break
    else:
        raise AssertionError(f"{where}: no {parts[0]!r} in {', '.join(mention.row.modules)}")
    obj: object = getattr(module, parts[0])
    for part in parts[1:]:
        assert has_attribute(obj, part), f"{where}: {getattr(obj, '__name__', obj)!s} has no attribute {part!r}"
        obj = getattr(obj, part, None)
    return obj


def has_attribute(obj: object, name: str) -> bool:
    """A class's attribute, field, or instance attribute its source assigns (`self.name = ...`)."""
    if hasattr(obj, name):
        return True
    if not isinstance(obj, type):
        return False
    for cls in obj.__mro__:
        if name in getattr(cls, "__annotations__", {}):
            return True
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        if re.search(rf"\bself\.{re.escape(name)}\s*[:=]", source):
            return True
    return False


def check_params(mention: Mention, obj: object) -> None:
    """The parameters a mention lists exist in obj's signature, positional ones in order, and none required is missing."""
    where = f"DESIGN.md:{mention.row.line}: `{mention.text}`"
    listed = [p.strip() for p in ast_split(mention.params or "")]
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AssertionError(f"{where}: lists parameters but is not callable") from None
    params = {n: p for i, (n, p) in enumerate(signature.parameters.items()) if not (i == 0 and n == "self")}
    order = list(params)
    last = -1
    for item in listed:
        if item == "...":
            continue
        name = item.lstrip("*").split("=")[0].strip()
        assert name in params, f"{where}: {name!r} is not a parameter of it (it takes {', '.join(order) or 'none'})"
        if "=" not in item and not item.startswith("*"):
            assert order.index(name) > last, f"{where}: {name!r} is out of order (the order is {', '.join(order)})"
            last = order.index(name)
    if "..." not in listed:
        named = {i.lstrip("*").split("=")[0].strip() for i in listed}
        required = [n for n, p in params.items() if p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [n for n in required if n not in named]
        assert not missing, f"{where}: leaves out the required parameter(s) {', '.join(missing)}"


def ast_split(params: str) -> list[str]:
    """Split a parameter list at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*out, cur] if p.strip()]


ROWS = map_rows()
MENTIONS = [m for r in ROWS for m in mentions(r)]


def test_every_module_in_the_map_exists_and_every_module_is_in_it() -> None:
    """A newcomer reading DESIGN.md finds each module it names, and each module of forgegit/ has a row."""
    named = {m for r in ROWS for m in r.modules}
    missing = sorted(m for m in named if not (PACKAGE / m).is_file())
    assert not missing, f"DESIGN.md names modules that do not exist: {missing}"
    actual = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
              if p.name not in NOT_MAPPED and p.parent.name != "commands" and p.name != "__init__.py"}
    unmapped = sorted(actual - named)
    assert not unmapped, f"modules with no row in DESIGN.md's map: {unmapped}"


@pytest.mark.parametrize("mention", MENTIONS, ids=[f"{m.row.modules[0]}:{m.text}" for m in MENTIONS])
def test_every_key_api_name_exists_where_the_map_says(mention: Mention) -> None:
    """Each name in DESIGN.md's key-API column is defined (or imported) in its row's module, with the
    parameters it lists: `evaluate(repo, ...)` where only `Evaluator.evaluate` exists fails here."""
    obj = resolve(mention)
    if mention.params is not None:
        check_params(mention, obj)


def test_the_map_checker_catches_a_wrong_name_and_wrong_parameters() -> None:
    """The check itself fails on the drift the map once had: a missing function and a wrong signature."""
    row = Row(0, ["agent.py"], "`run_agent(question, tools)`, `evaluate(repo, rev)`")
    wrong_params, missing = mentions(row)
    with pytest.raises(AssertionError, match="not a parameter"):
        check_params(wrong_params, resolve(wrong_params))
    with pytest.raises(AssertionError, match="no 'evaluate'"):
        resolve(missing)
    leaves_out = mentions(Row(0, ["tokens.py"], "`trim_to_tokens()`"))[0]
    with pytest.raises(AssertionError, match="leaves out"):
        check_params(leaves_out, resolve(leaves_out))


def test_the_notes_docstring_names_the_keys_the_code_writes() -> None:
    """notes.py's docstring lists the top-level keys of a note as the code writes and checks them."""
    from forgegit import notes
    doc = notes.__doc__ or ""
    for key in notes._PARTS:
        assert f'"{key}"' in doc, f"notes.py's docstring does not name the note key {key!r}"
    written = set(re.findall(r'"(\w+)":', ast.get_docstring(ast.parse((PACKAGE / "notes.py").read_text())) or ""))
    assert written <= set(notes._PARTS) | {"format"}, f"notes.py's docstring names keys the code does not write: {written}"
