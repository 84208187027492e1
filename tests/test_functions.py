"""Function files: check rules (with exact lines), JSON schema from type hints, docstrings, specs."""
from __future__ import annotations

import ast
import keyword
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_time_cases import CASES as IMPORT_TIME_CASES
from import_time_cases import source as import_time_source

from forgegit.errors import ForgegitError
from forgegit.functions import (
    FunctionFileError,
    FunctionSpec,
    Problem,
    UnsupportedType,
    check_paths,
    check_source,
    load_specs,
    parse_function,
    schema_for_annotation,
    split_docstring,
    validate_name,
)

GOOD = '''\
"""Arithmetic tools."""
from __future__ import annotations

from typing import Optional

_SCALE = 1


def _helper(x: int) -> int:
    return x * _SCALE


def add(a: int, b: int = 2, *, note: Optional[str] = None) -> int:
    """Add two integers.

    Use it for sums.

    Args:
        a: The first number.
        b (int): The second number,
            which defaults to two.
        note: Ignored.

    Returns:
        The sum.
    """
    return _helper(a) + b
'''


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def lines(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in problems]


def schema(annotation: str) -> dict[str, Any]:
    return schema_for_annotation(ast.parse(annotation, mode="eval").body)


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("int", {"type": "integer"}),
        ("float", {"type": "number"}),
        ("str", {"type": "string"}),
        ("bool", {"type": "boolean"}),
        ("list", {"type": "array"}),
        ("dict", {"type": "object"}),
        ("list[int]", {"type": "array", "items": {"type": "integer"}}),
        ("List[str]", {"type": "array", "items": {"type": "string"}}),
        ("typing.List[bool]", {"type": "array", "items": {"type": "boolean"}}),
        ("dict[str, float]", {"type": "object", "additionalProperties": {"type": "number"}}),
        ("Dict[str, list[int]]", {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}}),
        ("Optional[int]", {"type": ["integer", "null"]}),
        ("int | None", {"type": ["integer", "null"]}),
        ("None | str", {"type": ["null", "string"]}),
        ("Optional[list[str]]", {"type": ["array", "null"], "items": {"type": "string"}}),
        ("Union[int, str]", {"type": ["integer", "string"]}),
        ("Union[int, list[int]]", {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}),
        ("Literal['a', 'b']", {"type": "string", "enum": ["a", "b"]}),
        ("Literal[1, -2]", {"type": "integer", "enum": [1, -2]}),
        ("Literal[1, 2.5]", {"type": "number", "enum": [1, 2.5]}),
        ("Optional[Literal['x']]", {"type": ["string", "null"], "enum": ["x", None]}),
        ("'int'", {"type": "integer"}),
    ],
)
def test_schema_of_each_supported_annotation(annotation: str, expected: dict[str, Any]) -> None:
    """The tool schema the model sees has the JSON type matching the Python hint."""
    assert schema(annotation) == expected


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        ("tuple[int, int]", "unsupported type `tuple[...]`"),
        ("Any", "unsupported type `Any`"),
        ("set[str]", "unsupported type `set[...]`"),
        ("dict[int, str]", "dict keys must be str"),
        ("list[int, str]", "list[...] takes one item type"),
        ("Literal[len]", "Literal[...] values must be"),
        ("MyClass", "unsupported type `MyClass`"),
        ("'not a type ('", "is not a type"),
    ],
)
def test_unsupported_annotation_raises_with_a_reason(annotation: str, fragment: str) -> None:
    """An unsupported hint is reported with what is wrong, not silently schema'd as anything."""
    with pytest.raises(UnsupportedType) as exc:
        schema(annotation)
    assert fragment in str(exc.value)
    assert isinstance(exc.value, ForgegitError)


def test_spec_of_a_good_file_has_schema_defaults_and_descriptions() -> None:
    """The tool sent to the model: name, docstring description without Args/Returns, per-param docs."""
    spec = parse_function("functions/add.py", GOOD.encode())
    assert isinstance(spec, FunctionSpec)
    assert spec.name == "add" and spec.path == "functions/add.py" and spec.source == GOOD
    assert spec.description == "Add two integers.\n\nUse it for sums."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {"type": "integer", "description": "The second number, which defaults to two.", "default": 2},
            "note": {"type": ["string", "null"], "description": "Ignored.", "default": None},
        },
        "required": ["a"],
    }
    assert spec.tool() == {
        "type": "function",
        "function": {"name": "add", "description": spec.description, "parameters": spec.parameters},
    }


def test_optional_parameter_without_default_is_not_required() -> None:
    """`x: int | None` may be left out by the model; a plain `x: int` may not."""
    spec = parse_function("f.py", src('''
        def f(x: int | None, y: Optional[str], z: int) -> None:
            """Doc."""
        from typing import Optional
    '''))
    assert spec.parameters["required"] == ["z"]
    assert "default" not in spec.parameters["properties"]["x"]


def test_none_default_makes_the_schema_nullable() -> None:
    """`x: int = None` lets the model send null, so the default is valid against the schema."""
    spec = parse_function("f.py", 'def f(x: int = None, y: Literal["a"] = None):\n    """D.\n\n    Args:\n        x: An x.\n    """\nfrom typing import Literal\n')
    assert spec.parameters["properties"] == {
        "x": {"type": ["integer", "null"], "description": "An x.", "default": None},
        "y": {"type": ["string", "null"], "enum": ["a", None], "default": None},
    }


def test_list_and_dict_defaults_become_json_defaults() -> None:
    spec = parse_function("f.py", 'def f(a: list[int] = (1, 2), b: dict[str, int] = {"k": 1}):\n    """D."""\n')
    props = spec.parameters["properties"]
    assert props["a"]["default"] == [1, 2] and props["b"]["default"] == {"k": 1}
    assert spec.parameters["required"] == []


# --------------------------------------------------------------------------- docstrings


def test_docstring_sections_other_than_args_and_returns_are_kept() -> None:
    doc = "Do it.\n\nArguments:\n    x (int): The x.\n    *rest: ignored\nRaises:\n    ValueError: when bad.\nYields:\n    Things."
    description, params = split_docstring(doc)
    assert description == "Do it.\n\nRaises:\n    ValueError: when bad."
    assert params == {"x": "The x.", "rest": "ignored"}


def test_docstring_without_args_section_gives_no_param_descriptions() -> None:
    assert split_docstring("Just a summary.\n\nx: not an arg section") == ("Just a summary.\n\nx: not an arg section", {})


def test_prose_lines_ending_in_a_colon_are_kept_verbatim() -> None:
    """Only Args/Returns-like headers start a dropped section; `Use it like this:` is prose."""
    doc = "Convert Units.\n\nUse it like THIS:\n    f('km')\nReturns:\n    A float."
    assert split_docstring(doc) == ("Convert Units.\n\nUse it like THIS:\n    f('km')", {})


def test_text_after_an_args_section_is_kept_as_description() -> None:
    description, params = split_docstring("Top.\n\nArgs:\n    a: A.\n\nMore prose at the end.")
    assert description == "Top.\n\nMore prose at the end."
    assert params == {"a": "A."}


# --------------------------------------------------------------------------- check rules

CASES: list[tuple[str, str, str, int, str]] = [
    # (id, file name, source, line, message fragment)
    ("syntax", "f.py", 'def f(x: int):\n    """D."""\n    return (\n', 3, "syntax error"),
    ("no-public", "f.py", "import os\n\n\ndef _f():\n    pass\n", 1, "no public function: define `def f(...)`"),
    ("two-public", "f.py", 'def f():\n    """D."""\n\n\ndef g():\n    """D."""\n', 5, "only one public function per file: rename `g` to `_g`"),
    ("wrong-name", "f.py", '\n\ndef g():\n    """D."""\n', 3, "the public function `g` must be named `f`"),
    ("none-match", "f.py", 'def g():\n    """D."""\n\ndef h():\n    """D."""\n', 1, "no public function `f` (the file name); found `g`, `h`"),
    ("twice", "f.py", 'def f():\n    """D."""\n\ndef f():\n    """D."""\n', 4, "`f` is defined again (first on line 1)"),
    ("no-docstring", "f.py", "import os\n\ndef f(x: int) -> int:\n    return x\n", 3, "`f` has no docstring"),
    ("empty-docstring", "f.py", 'def f():\n    """   """\n', 1, "`f` has no docstring"),
    ("unannotated", "f.py", 'def f(\n    a: int,\n    b,\n):\n    """D."""\n', 3, "parameter `b` has no type annotation"),
    ("unsupported", "f.py", 'def f(\n    a: int,\n    b: tuple[int, int],\n):\n    """D."""\n', 3, "parameter `b`: unsupported type `tuple[...]`"),
    ("varargs", "f.py", 'def f(\n    a: int,\n    *args: int,\n):\n    """D."""\n', 3, "`*args` is not allowed"),
    ("kwargs", "f.py", 'def f(\n    a: int,\n    **kw: int,\n):\n    """D."""\n', 3, "`**kw` is not allowed"),
    ("posonly", "f.py", 'def f(a: int, /):\n    """D."""\n', 1, "parameter `a` is positional-only"),
    ("call-default", "f.py", 'import os\ndef f(\n    a: str = os.getcwd(),\n):\n    """D."""\n', 3, "the default of parameter `a` must be a literal"),
    ("not-imported", "f.py", 'def f(\n    a: Optional[int] = None,\n):\n    """D."""\n', 2, "`Optional` is not imported (add `from typing import Optional`)"),
    ("inf-default", "f.py", 'def f(\n    a: float = 1e999,\n):\n    """D."""\n', 2, "the default of parameter `a` must be a literal"),
    ("main-else", "f.py", 'def f():\n    """D."""\nif __name__ == "__main__":\n    f()\nelse:\n    print("imported")\n', 6, "`print('imported')`"),
    ("top-call", "f.py", 'import os\n\nos.makedirs("x")\n\ndef f():\n    """D."""\n', 3, "code at the top level would run on import: `os.makedirs('x')`"),
    ("top-call-assign", "f.py", 'import re\nPAT = re.compile("x")\ndef f():\n    """D."""\n', 2, "`PAT = re.compile('x')` is not a constant"),
    ("top-loop", "f.py", 'def f():\n    """D."""\nfor i in (1, 2):\n    pass\n', 3, "code at the top level would run on import: `for i in (1, 2):`"),
    ("attr-assign", "f.py", 'import os\nos.environ["A"] = "1"\ndef f():\n    """D."""\n', 2, "code at the top level would run on import"),
    ("if-body", "f.py", 'import sys\nif sys.platform == "linux":\n    import os\n    os.nice(1)\ndef f():\n    """D."""\n', 4, "`os.nice(1)`"),
    ("if-call-test", "f.py", 'import os\nif os.fork():\n    pass\ndef f():\n    """D."""\n', 2, "code at the top level would run on import: `if os.fork():`"),
    ("try-body", "f.py", 'try:\n    import numpy\nexcept ImportError:\n    print("no numpy")\ndef f():\n    """D."""\n', 4, "`print('no numpy')`"),
    ("class-body", "f.py", 'class _C:\n    X = 1\n    print(X)\ndef f():\n    """D."""\n', 3, "code in a class body would run on import: `print(X)`"),
    ("async", "f.py", 'async def f():\n    """D."""\n', 1, "`f` must be a plain `def`, not `async def`"),
    ("bad-file-name", "my-tool.py", 'def g():\n    """D."""\n', 1, "`my-tool` cannot be a function name"),
    ("keyword-file-name", "class.py", 'def g():\n    """D."""\n', 1, "`class` is a Python keyword"),
    ("stdlib-file-name", "json.py", 'def json():\n    """D."""\n', 1, "would shadow the standard-library module `json`"),
    ("private-file-name", "_f.py", 'def _f():\n    """D."""\n', 1, "starts with an underscore"),
]


@pytest.mark.parametrize(("name", "source", "line", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_check_rule_reports_the_exact_line(name: str, source: str, line: int, fragment: str) -> None:
    """`forgegit check` points at the line that breaks the rule, with a message saying which rule."""
    problems = check_source(f"functions/{name}", source)
    assert any(p.line == line and fragment in p.message for p in problems), lines(problems)
    assert all(p.path == f"functions/{name}" for p in problems)
    with pytest.raises(FunctionFileError):
        parse_function(f"functions/{name}", source)


@pytest.mark.parametrize(
    ("source", "line", "fragment"),
    [
        (b"", 1, "the file is empty"),
        (b"  \n\n\t\n", 1, "the file is empty"),
        (b'"""ok"""\nx = "\xff"\n', 2, "not valid UTF-8 (byte 0xff)"),
        (b"def f():\n  x\x00\n", 2, "null byte"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", 1, "null byte"),
        (b"# -*- coding: latin-1 -*-\ndef f():\n    '''D.'''\n", 1, "declares encoding `latin-1`"),
        (b"def f(:\n", 1, "syntax error"),
        ("def f():\n    '''D.'''\n    x = '\ud800'\n", 1, "cannot parse"),
    ],
)
def test_unreadable_source_is_one_problem_not_a_crash(source: bytes | str, line: int, fragment: str) -> None:
    """Binary, empty, non-UTF-8 and broken files each give one clear problem."""
    problems = check_source("functions/f.py", source)
    assert len(problems) == 1 and problems[0].line == line and fragment in problems[0].message, lines(problems)


def test_allowed_top_level_statements_pass() -> None:
    """Imports, constants, helpers, classes, a __main__ guard and TYPE_CHECKING imports are fine."""
    source = src('''
        """Module docstring."""
        from __future__ import annotations

        import dataclasses
        import functools
        import math
        import sys
        from typing import TYPE_CHECKING, Callable, Literal, NamedTuple, Optional

        if TYPE_CHECKING:
            from collections.abc import Iterable
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        try:
            import numpy
        except (ImportError, OSError):
            numpy = None

        __all__ = ["f"]
        LIMIT: int = 10
        NEG, POS = -1, +1
        UNITS = {"m": 1.0, "km": 1e3}
        NAMES = ("a", "b", "c")
        PI = math.pi
        DAY = 24 * 60 * 60
        INT_MAX = 2 ** 31 - 1
        MASK = ~0xFF & 0xFFFF
        _FUNCS = {math.floor: "floor", math.ceil: "ceil"}
        _ALIASES = [PI, (DAY, math.tau)]
        """A stray string does nothing."""


        class _Point:
            """A point."""
            x: int = 0
            y = 1
            unit: Optional[str] = None
            def norm(self) -> float:
                return math.hypot(self.x, self.y)
            @property
            def size(self) -> float:
                return self.norm()
            @size.setter
            def size(self, value: float) -> None:
                self.x = int(value)
            @staticmethod
            def origin() -> "_Point":
                return _Point()
            @classmethod
            def parse(cls, text: str = "0,0", sep: str = ",") -> "_Point":
                return cls()


        class _Error(ValueError):
            pass


        class _Stricter(_Error):
            code = 2


        @dataclasses.dataclass(frozen=True)
        class _Pair:
            a: int = 0
            b: list[int] | None = None


        class _Row(NamedTuple):
            name: str
            value: float = 0.0


        @functools.lru_cache(maxsize=None)
        def _cached(n: int, table: dict[str, Callable[[int], int]] = {}) -> int:
            return n


        def _helper(x):
            return x


        def f(unit: Literal["m", "km"], value: float = 1.0, *, exact: Optional[bool] = None):
            """Convert."""
            return value * UNITS[unit]


        if __name__ == "__main__":
            print(f("km"))
    ''')
    assert check_source("functions/f.py", source) == []


def test_utf8_bom_and_utf8_coding_cookie_are_fine() -> None:
    body = "# -*- coding: utf-8 -*-\ndef f(s: str) -> str:\n    '''Grüße.'''\n    return s\n"
    assert check_source("f.py", "\ufeff".encode() + body.encode()) == []
    assert check_source("f.py", "\ufeff" + body) == []


def test_return_annotation_is_optional_and_unchecked() -> None:
    assert check_source("f.py", 'def f(x: int):\n    """D."""\n') == []
    assert check_source("f.py", 'def f(x: int) -> tuple[int, str]:\n    """D."""\n') == []


def test_keyword_only_parameters_are_fine_and_in_the_schema() -> None:
    spec = parse_function("f.py", 'def f(a: int, *, b: str, c: bool = True):\n    """D."""\n')
    assert list(spec.parameters["properties"]) == ["a", "b", "c"]
    assert spec.parameters["required"] == ["a", "b"]


def test_expected_name_overrides_the_file_stem() -> None:
    source = 'def search(q: str):\n    """D."""\n'
    assert check_source("tmp/candidate-1.py", source, expected_name="search") == []
    assert [p.line for p in check_source("tmp/x.py", source, expected_name="lookup")] == [1]


def test_problems_are_sorted_by_line_and_print_as_path_line_message() -> None:
    source = 'import os\nos.getcwd()\ndef f(a, b):\n    pass\n'
    problems = check_source("functions/f.py", source)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert str(problems[0]) == "functions/f.py:2: code at the top level would run on import: `os.getcwd()` " \
        "(only imports, def/class, constants and a docstring may sit there)"


def test_function_file_error_carries_every_problem() -> None:
    with pytest.raises(FunctionFileError) as exc:
        parse_function("functions/f.py", "def f(a, b):\n    pass\n")
    assert len(exc.value.problems) == 3
    assert str(exc.value) == f"{exc.value.problems[0]} (and 2 more)"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../.github/workflows/x", "path separator"),
        ("/etc/x", "path separator"),
        ("a\\b", "path separator"),
        ("a.b", "ASCII letters"),
        ("", "empty"),
        ("9lives", "ASCII letters"),
        ("naïve", "ASCII letters"),
        ("with space", "ASCII letters"),
        ("x" * 65, "longer than 64"),
        ("class", "keyword"),
        ("None", "keyword"),
        ("_private", "underscore"),
        ("__init__", "makes functions/ a package"),
        ("os", "standard-library module `os`"),
    ],
)
def test_validate_name_rejects_unsafe_names(name: str, fragment: str) -> None:
    """The optimizer cannot name a function so that its file lands outside functions/ or breaks imports."""
    reason = validate_name(name)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("name", ["search", "get_weather", "x" * 64, "F2", "match"])
def test_validate_name_accepts_plain_identifiers(name: str) -> None:
    assert validate_name(name) is None


# --------------------------------------------------------------------------- paths and specs


def test_check_paths_reads_files_and_directories(tmp_path: Path) -> None:
    d = tmp_path / "functions"
    d.mkdir()
    (d / "add.py").write_text(GOOD)
    (d / "bad.py").write_text("def bad(x):\n    '''D.'''\n")
    (d / "notes.txt").write_text("not python")
    (d / "dir.py").mkdir()
    problems = check_paths([str(d), str(tmp_path / "missing.py"), str(d / "add.py")])
    assert [(Path(p.path).name, p.line) for p in problems] == [("bad.py", 1), ("dir.py", 1), ("missing.py", 1)]
    assert "no type annotation" in problems[0].message
    assert "a directory" in problems[1].message
    assert "no such file" in problems[2].message


def test_check_paths_reports_a_non_py_file_and_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.py").write_text(GOOD)
    (tmp_path / "link.py").symlink_to(tmp_path / "real.py")
    (tmp_path / "readme.md").write_text("# hi")
    problems = check_paths([str(tmp_path / "link.py"), str(tmp_path / "readme.md")])
    assert ["symbolic link" in problems[0].message, "<name>.py" in problems[1].message] == [True, True]


def test_load_specs_returns_sorted_good_specs_and_problems_of_bad_ones() -> None:
    files = {
        "zeta.py": b'def zeta(x: float) -> float:\n    """Z."""\n    return x\n',
        "add.py": GOOD.encode(),
        "broken.py": b"def broken(:\n",
        "mismatch.py": b'def other():\n    """D."""\n',
    }
    specs, problems = load_specs(files)
    assert [s.name for s in specs] == ["add", "zeta"]
    assert [s.path for s in specs] == ["functions/add.py", "functions/zeta.py"]
    assert [(p.path, p.line) for p in problems] == [("functions/broken.py", 1), ("functions/mismatch.py", 1)]
    _, problems = load_specs({"x.py": b""}, root="tmp/cand")
    assert problems[0].path == "tmp/cand/x.py"


# --------------------------------------------------------------------------- properties

PYTHONISH = st.text(alphabet=st.sampled_from(list("def f():\n\t'\"#:=,()[]{}*/\\ abcxyz01_.@|-\x00\xff\u00e9")), max_size=120)


@settings(max_examples=300, deadline=None)
@given(source=st.one_of(st.binary(max_size=200), st.text(max_size=200), PYTHONISH), name=st.none() | st.text(max_size=10))
def test_check_source_never_raises_on_arbitrary_input(source: bytes | str, name: str | None) -> None:
    """Whatever bytes a file holds, check reports Problems (line >= 1) rather than crashing."""
    problems = check_source("functions/x.py", source, expected_name=name)
    assert all(isinstance(p, Problem) and p.line >= 1 and p.path == "functions/x.py" for p in problems)
    if problems:
        with pytest.raises(FunctionFileError):
            parse_function("functions/x.py", source)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_check_source_never_raises_on_mutated_valid_files(data: st.DataObject) -> None:
    """Near-valid files (a valid one with a slice deleted or junk inserted) never crash the check."""
    i = data.draw(st.integers(0, len(GOOD)))
    j = data.draw(st.integers(i, len(GOOD)))
    junk = data.draw(st.text(max_size=8) | st.sampled_from(["def ", "(", "*", "print()\n", '"""', ":\n  "]))
    mutated = GOOD[:i] + junk + GOOD[j:]
    problems = check_source("functions/add.py", mutated)
    assert all(p.line >= 1 for p in problems)
    if not problems:
        assert parse_function("functions/add.py", mutated).name == "add"


IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
FUNC_NAME = IDENT.filter(lambda n: validate_name(n) is None)
PARAM_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
JSON_FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)
WORDS = st.text(alphabet="abcxyz", min_size=1, max_size=4)

# (annotation source, strategy of values of that type, accepts None)
Typ = tuple[str, st.SearchStrategy[Any], bool]
BASE: st.SearchStrategy[Typ] = st.one_of(
    st.just(("int", st.integers(-10**6, 10**6), False)),
    st.just(("float", JSON_FLOATS, False)),
    st.just(("str", st.text(max_size=5), False)),
    st.just(("bool", st.booleans(), False)),
    st.lists(WORDS, min_size=1, max_size=3, unique=True).map(
        lambda vs: (f"Literal[{', '.join(map(repr, vs))}]", st.sampled_from(vs), False)
    ),
)


def _extend(inner: st.SearchStrategy[Typ]) -> st.SearchStrategy[Typ]:
    return st.one_of(
        inner.map(lambda t: (f"list[{t[0]}]", st.lists(t[1], max_size=3), False)),
        inner.map(lambda t: (f"List[{t[0]}]", st.lists(t[1], max_size=3), False)),
        inner.map(lambda t: (f"dict[str, {t[0]}]", st.dictionaries(st.text(max_size=3), t[1], max_size=3), False)),
        inner.map(lambda t: (f"Optional[{t[0]}]", st.none() | t[1], True)),
        inner.map(lambda t: (f"{t[0]} | None", st.none() | t[1], True)),
    )


TYPES = st.recursive(BASE, _extend, max_leaves=3)


@st.composite
def function_files(draw: st.DrawFn) -> tuple[str, str, list[str], list[str], dict[str, Any], list[tuple[str, Any]]]:
    """(name, source, parameter names in order, required names, defaults, (param, example value) pairs)."""
    name = draw(FUNC_NAME)
    names = draw(st.lists(PARAM_NAME, max_size=6, unique=True))
    params = []
    for p in names:
        ann, values, nullable = draw(TYPES)
        has_default = draw(st.booleans())
        default = draw(values) if has_default else None
        params.append((p, ann, values, nullable, has_default, default, draw(values)))
    split = draw(st.integers(0, len(params)))
    positional = sorted(params[:split], key=lambda p: p[4])  # defaults after non-defaults
    ordered = positional + params[split:]
    parts = [f"{p}: {ann}" + (f" = {default!r}" if has_default else "") for p, ann, _, _, has_default, default, _ in positional]
    keyword_only = [f"{p}: {ann}" + (f" = {default!r}" if has_default else "") for p, ann, _, _, has_default, default, _ in params[split:]]
    if keyword_only:
        parts += ["*", *keyword_only]
    args_doc = "".join(f"        {p}: About {p}.\n" for p, *_ in ordered)
    source = (
        '"""Generated."""\nfrom typing import Dict, List, Literal, Optional\n\nLIMIT = 3\n\n\n'
        "def _helper(x):\n    return x\n\n\n"
        f"def {name}({', '.join(parts)}) -> str:\n"
        f'    """Do the {name} thing.\n\n    Args:\n{args_doc}    """\n    return ""\n'
    )
    required = [p for p, _, _, nullable, has_default, _, _ in ordered if not has_default and not nullable]
    defaults = {p: default for p, _, _, _, has_default, default, _ in ordered if has_default}
    examples = [(p, example) for p, *_, example in ordered]
    return name, source, [p[0] for p in ordered], required, defaults, examples


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=function_files())
def test_generated_valid_files_pass_and_their_schema_lists_exactly_their_parameters(
    generated: tuple[str, str, list[str], list[str], dict[str, Any], list[tuple[str, Any]]],
) -> None:
    """Any well-formed function file passes, and its tool schema describes exactly its parameters."""
    name, source, names, required, defaults, examples = generated
    assert check_source(f"functions/{name}.py", source) == []
    spec = parse_function(f"functions/{name}.py", source.encode())
    params = spec.parameters
    assert spec.name == name and spec.description == f"Do the {name} thing."
    assert list(params["properties"]) == names
    assert params["required"] == required
    for p in names:
        assert params["properties"][p]["description"] == f"About {p}."
        assert ("default" in params["properties"][p]) == (p in defaults)
    for p, value in defaults.items():
        assert params["properties"][p]["default"] == _jsonish(value)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(params)
    instance = {p: _jsonish(v) for p, v in examples}
    jsonschema.validate(instance, params, cls=jsonschema.Draft202012Validator)


def _jsonish(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    return value


@settings(max_examples=100, deadline=None)
@given(typ=TYPES)
def test_schema_accepts_null_exactly_when_the_hint_is_optional(typ: Typ) -> None:
    """The model may send null for `X | None`/`Optional[X]` and for nothing else."""
    jsonschema = pytest.importorskip("jsonschema")
    ann, _, nullable = typ
    assert jsonschema.Draft202012Validator(schema(ann)).is_valid(None) == nullable


@pytest.mark.parametrize("source,line,needle", [
    ('"""m"""\nimport functools\n\n\n@functools.lru_cache(maxsize=print("boo"))\ndef _h(x):\n    return x\n', 5, "decorator `functools.lru_cache(maxsize=print('boo'))` of _h"),
    ('"""m"""\n\n\ndef _h(x=print("boo")):\n    return x\n', 4, "default `print('boo')` of _h"),
    ('"""m"""\n\n\ndef _h(x: print("boo")) -> int:\n    return 1\n', 4, "annotation `print('boo')` of _h"),
    ('"""m"""\n\n\nclass _C(type("B", (), {})):\n    pass\n', 4, "base class"),
])
def test_calls_in_decorators_annotations_defaults_and_bases_are_rejected(source: str, line: int, needle: str) -> None:
    """Code in a decorator, annotation, default or class base runs on import, so check refuses it."""
    public = '\n\ndef f(x: int) -> int:\n    """Echo.\n\n    Args:\n        x: A number.\n    """\n    return x\n'
    problems = check_source("f.py", source + public)
    assert any(p.line == line and needle in p.message for p in problems), problems


# --------------------------------------------------------------------------- import time: an allow-list

@pytest.mark.parametrize(("name", "code", "fragment", "trigger", "runs"), IMPORT_TIME_CASES,
                         ids=[c[0] for c in IMPORT_TIME_CASES])
def test_check_refuses_code_that_would_run_when_the_file_is_imported(
    name: str, code: str, fragment: str, trigger: str, runs: bool,
) -> None:
    """A private decorator, a metaclass, `__init_subclass__`, `__class_getitem__`, an f-string of an object,
    a class property and the rest: each is a problem of `forgegit check`, pointing at the construct."""
    problems = check_source(f"functions/{name}.py", import_time_source(name, code))
    assert any(fragment in p.message for p in problems), lines(problems)


@pytest.mark.parametrize(("name", "code", "fragment", "trigger", "runs"),
                         [c for c in IMPORT_TIME_CASES if c[4]], ids=[c[0] for c in IMPORT_TIME_CASES if c[4]])
def test_each_refused_construct_really_runs_code_on_import(
    tmp_path: Path, name: str, code: str, fragment: str, trigger: str, runs: bool,
) -> None:
    """The cases above are not hypothetical: importing the file (as another file of the set would) runs its code."""
    (tmp_path / f"{name}.py").write_text(import_time_source(name, code))
    mark = tmp_path / "ran"
    env = {**os.environ, "FORGEGIT_MARK": str(mark), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-W", "ignore", "-c", trigger or f"import {name}"], cwd=tmp_path, env=env,
                   capture_output=True, timeout=60)
    assert mark.exists(), f"{name}: the construct did not run on import"


@pytest.mark.parametrize("code", [
    "import functools\n\n\n@functools.cache\ndef _h(n: int) -> int:\n    return n\n",
    "from functools import lru_cache\n\n\n@lru_cache(128)\ndef _h(n: int) -> int:\n    return n\n",
    "from dataclasses import dataclass\n\n\n@dataclass\nclass _P:\n    x: int = 0\n",
    "import abc\n\n\nclass _Base(abc.ABC):\n    @abc.abstractmethod\n    def run(self) -> None:\n        pass\n",
    "from typing import TypedDict\n\n\nclass _Opts(TypedDict):\n    depth: int\n",
    "from typing import Protocol\n\n\nclass _Reader(Protocol):\n    def read(self) -> str:\n        ...\n",
    "import typing\n\n\n@typing.overload\ndef _h(x: int) -> int:\n    ...\n",
    'import ast\nimport operator\n\n_OPS = {ast.Add: operator.add, ast.Sub: operator.sub}\n',
    "try:\n    import numpy as np\nexcept (ImportError, OSError):\n    np = None\n",
    "import sys\n\nif sys.version_info >= (3, 11):\n    import tomllib\nelse:\n    tomllib = None\n",
    'import sys\n\nif sys.platform == "win32":\n    SEP = "\\\\"\nelse:\n    SEP = "/"\n',
    "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from collections.abc import Iterator\n",
    "class _K:\n    class _Inner(Exception):\n        pass\n    LIMIT = 3\n",
    '__all__ = ["f"]\n__version__ = "1.0"\n',
])
def test_check_accepts_the_usual_top_level_forms(code: str) -> None:
    """The allow-list still takes what tool code ordinarily holds at the top."""
    assert check_source("functions/f.py", code + '\n\ndef f(x: int) -> int:\n    """Echo."""\n    return x\n') == []


@pytest.mark.parametrize(("code", "fragment"), [
    ("import functools\n\n\n@functools.wraps(print)\ndef _h():\n    pass\n", "not an allowed decorator"),
    ("import functools\n\n\n@functools.cache(1)\ndef _h():\n    pass\n", "takes no arguments here"),
    ("import functools as dataclasses\n\n\n@dataclasses.dataclass\nclass _C:\n    pass\n", "not an allowed decorator"),
    ("from x import *\n\n\nclass _C:\n    @property\n    def p(self):\n        return 1\n", "not an allowed decorator"),
    ("class _C(dict, total=False):\n    pass\n", "class keyword `total=False`"),
    ("class _C(_Later):\n    pass\n\n\nclass _Later:\n    pass\n", "base class `_Later` of _C"),
    ("import typing\n\n\nclass _C(typing.Generic[int]):\n    pass\n", "base class"),
    ("class _C:\n    import os\n", "code in a class body would run on import: `import os`"),
    ("__builtins__ = {}\n", "the file assigns `__builtins__`"),
    ("from os import path as __path__\n", "the file imports `__path__`"),
    ("X = -True.real\n", "applies an operator"),
    ("X = (1).bit_length\n", "reads an attribute of an expression"),
    ("__name__ = 'x'\nif __name__ == '__main__':\n    pass\n", "code at the top level would run on import: `if __name__"),
])
def test_check_refuses_forms_outside_the_allow_list(code: str, fragment: str) -> None:
    problems = check_source("functions/f.py", code + '\n\ndef f(x: int) -> int:\n    """Echo."""\n    return x\n')
    assert any(fragment in p.message for p in problems), lines(problems)


# --------------------------------------------------------------------------- names tools run on their own


@pytest.mark.parametrize(("name", "fragment"), [
    ("conftest", "pytest imports every conftest.py"),
    ("test_pwn", "pytest collects and runs test_*.py"),
    ("Test_Pwn", "pytest collects and runs test_*.py"),
    ("pwn_test", "pytest collects and runs test_*.py and *_test.py"),
    ("sitecustomize", "Python imports sitecustomize.py at start-up"),
    ("usercustomize", "Python imports usercustomize.py at start-up"),
    ("setup", "packaging tools run setup.py"),
    ("noxfile", "nox runs noxfile.py"),
    ("__main__", "run __main__.py"),
    ("__init__", "makes functions/ a package"),
    ("python", "shadow the agent's built-in `python` tool"),
])
def test_check_refuses_a_function_file_that_a_tool_would_run_on_its_own(tmp_path: Path, name: str, fragment: str) -> None:
    """`pytest` at the repository root ran functions/test_pwn.py; a function named python hid the python tool."""
    d = tmp_path / "functions"
    d.mkdir()
    (d / f"{name}.py").write_text(f'def {name}(x: int) -> int:\n    """Echo."""\n    return x\n')
    problems = check_paths([str(d)])
    assert any(fragment in p.message and f"functions/{name}.py" in p.message for p in problems), lines(problems)
    assert validate_name(name) is not None and fragment in (validate_name(name) or "")


@pytest.mark.parametrize("name", ["testing", "contest", "latest", "tester", "pythonic", "setup_tax", "attest"])
def test_names_that_only_look_like_tool_files_are_fine(name: str) -> None:
    assert validate_name(name) is None
