"""Function files that run their own code when imported, each through a different Python mechanism.

Each case is (function name, source before the public function, what `forgegit check` must say,
the statement that imports it, and whether it really runs code on this Python). The payload `_boom()` writes the file named by $FORGEGIT_MARK, so
a test can prove the construct really runs code on import before it checks that forgegit refuses it.
"""
from __future__ import annotations

import sys

BOOM = '''
def _boom(*args, **kwargs):
    import os
    open(os.environ["FORGEGIT_MARK"], "w").close()
    return args[0] if args else None

'''


def public(name: str) -> str:
    return f'\n\ndef {name}(x: int) -> int:\n    """Echo.\n\n    Args:\n        x: A number.\n    """\n    return x\n'


CLASS_PROPERTY_RUNS = sys.version_info < (3, 13)  # classmethod stopped wrapping descriptors in 3.13

# (name, code, message fragment, importing statement ("" for `import <name>`), really runs on this Python)
CASES: list[tuple[str, str, str, str, bool]] = [
    ("private_decorator", "@_boom\ndef _h():\n    pass\n", "decorator `_boom` of _h", "", True),
    ("private_class_decorator", "@_boom\nclass _C:\n    pass\n", "decorator `_boom` of _C", "", True),
    ("metaclass", "class _C(metaclass=_boom):\n    pass\n", "class keyword `metaclass=_boom` of _C", "", True),
    ("init_subclass",
     "class _A:\n    def __init_subclass__(cls, **kw):\n        _boom()\n\n\nclass _B(_A):\n    pass\n",
     "`_A.__init_subclass__` would run code on import", "", True),
    ("init_subclass_assigned",
     "def _hook(cls):\n    _boom()\n\n\nclass _A:\n    __init_subclass__ = _hook\n\n\nclass _B(_A):\n    pass\n",
     "the class body binds `__init_subclass__`", "", True),
    ("class_getitem",
     "class _A:\n    def __class_getitem__(cls, item):\n        return _boom()\n\n\nX = _A[int]\n",
     "`_A.__class_getitem__` would run code on import", "", True),
    ("class_getitem_annotation",
     "class _A:\n    def __class_getitem__(cls, item):\n        return _boom()\n\n\ndef _h(x: _A[int]):\n    pass\n",
     "`_A.__class_getitem__` would run code on import", "", True),
    ("fstring_of_an_object",
     "import enum\n\n\nclass _E(enum.Enum):\n    A = 1\n\n    def __format__(self, spec):\n        return str(_boom())\n\n\n"
     'X = f"{_E.A}"\n',
     "is an f-string", "", True),
    ("enum_member_init",
     "import enum\n\n\nclass _E(enum.Enum):\n    A = 1\n\n    def __init__(self, value):\n        _boom()\n",
     "base class `enum.Enum` of _E", "", True),
    ("operator_on_an_object",
     "import enum\n\n\nclass _E(enum.Enum):\n    A = 1\n\n    def __add__(self, other):\n        return _boom()\n\n\n"
     "X = _E.A + 1\n",
     "applies an operator to something other than number literals", "", True),
    ("class_property",
     "class _C:\n    @classmethod\n    @property\n    def p(cls):\n        return _boom()\n\n\nX = _C.p\n",
     "classmethod over another decorator", "", CLASS_PROPERTY_RUNS),
    ("set_name",
     "class _D:\n    def __init__(self, f):\n        pass\n\n    def __set_name__(self, owner, name):\n        _boom()\n\n\n"
     "@_D\ndef _f():\n    pass\n\n\nclass _C:\n    x = _f\n",
     "`_D.__set_name__` would run code on import", "", True),
    ("rebound_property", "property = _boom\n\n\nclass _C:\n    @property\n    def x(self):\n        return 1\n",
     "decorator `property` of x", "", True),
    ("aliased_base", "import enum\n\n_Base = enum.Enum\n\n\nclass _E(_Base):\n    A = 1\n\n    def __init__(self, v):\n        _boom()\n",
     "base class `_Base` of _E", "", True),
    ("call_in_default", "def _h(x=_boom()):\n    pass\n", "default `_boom()` of _h", "", True),
    ("call_in_annotation", "X: _boom() = 1\n", "the annotation of `X` would run code on import", "", True),
    ("comprehension", "X = [_boom() for _ in (1,)]\n", "is a comprehension", "", True),
    ("handler_call", "try:\n    import no_such_module_xyz\nexcept _boom():\n    pass\n",
     "code at the top level would run on import: `try:`", "", True),
    ("dataclass_arguments", "import dataclasses\n\n\n@dataclasses.dataclass(**_boom({}))\nclass _C:\n    a: int = 0\n",
     "decorator `dataclasses.dataclass(**_boom({}))` of _C", "", True),
    ("module_getattr", "def __getattr__(name):\n    return _boom()\n",
     "the file defines `__getattr__` at the top level", "from module_getattr import anything", True),
    ("walrus", "X = (Y := 1)\n", "is an assignment expression", "", False),
    ("lambda_default", "def _h(f=lambda: 1):\n    pass\n", "is a lambda", "", False),
    ("subscript_value", 'X = {"a": 1}["a"]\n', "is a subscript", "", False),
    ("unpack_a_name", "import enum\n\n\nclass _E(enum.Enum):\n    A = 1\n\n\nX, Y = _E.A\n",
     "unpack only a tuple written out", "", False),
    ("bool_of_an_object", "import enum\n\n\nclass _E(enum.Enum):\n    A = 1\n\n\nif _E.A:\n    pass\n",
     "code at the top level would run on import: `if _E.A:`", "", False),
    ("huge_power", "X = 9 ** 9 ** 9\n", "`**` and `<<` only to a number", "", False),
]


def source(name: str, code: str) -> str:
    """The whole function file of a case: the payload, the construct, then a valid public function."""
    return BOOM + code + public(name)
