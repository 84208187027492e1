"""Equivalence of LaTeX math answers (MATH-style): normalize, compare structure, then numbers, then sympy."""
from __future__ import annotations

import cmath
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any, Optional

MAX_SYMPY_CHARS = 200  # longer answers are compared as strings only (keeps sympy's cost bounded)
MAX_ANSWER_CHARS = 2000  # longer "answers" are compared verbatim (keeps normalization's cost bounded)
REL_TOL = 1e-6
_SAMPLE_POINTS = (0.5772, 1.4142, 2.3026)  # where free symbols are evaluated; irrational-ish to avoid coincidences

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def last_boxed(s: str) -> Optional[str]:
    """The contents of the last \\boxed{...} (or \\fbox{...}) in s, braces balanced; None when there is none."""
    matches = list(_BOXED.finditer(s))
    for m in reversed(matches):
        start = m.end()
        if start < len(s) and s[start] == "{":
            inner = _balanced(s, start)
            if inner is not None:
                return inner.strip()
        elif start < len(s):  # "\boxed 5": the next token
            token = re.match(r"[^\s$.,]+", s[start:])
            if token:
                return token.group(0)
    return None


def _balanced(s: str, start: int) -> Optional[str]:
    """The text inside the brace group opening at s[start], or None when it never closes."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] == "{" and (i == 0 or s[i - 1] != "\\"):
            depth += 1
        elif s[i] == "}" and (i == 0 or s[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return s[start + 1:i]
    return None


# --- normalization -------------------------------------------------------------------------------

_DROP = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle",
         r"\bigl", r"\bigr", r"\Bigl", r"\Bigr", r"\big", r"\Big")
_WORDY_UNIT = re.compile(r"(?<=[\d}])\s+[a-zA-Z]{2,}(?:\s+[a-zA-Z]+)*(?:\^\{?\d\}?)?$")
_FUNCTION_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "pi", "sqrt", "infty"}


def normalize(s: str) -> str:
    """A canonical spelling of a LaTeX answer: no spacing macros, units, $, %, degrees or `x=`."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\(?:mbox|textbf|textrm|textit|mathrm|mathbf|operatorname)\s*{", r"\\text{", s)
    for token in _DROP:
        s = s.replace(token, "")
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace("{,}", ",")
    s = re.sub(r"\^\s*{?\s*\\circ\s*}?", "", s).replace("°", "").replace(r"\circ", "")
    s = s.replace(r"\$", "").replace("$", "").replace(r"\%", "").replace("%", "")
    s = re.sub(r"(?<!\\)\\ ", " ", s).replace("~", " ")
    s = _strip_text_units(s)
    s = _unwrap_text(s)
    s = re.sub(r"^[a-zA-Z]\s*\\in\s*", "", s)
    if s.count("=") == 1 and re.match(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*=", s):
        s = s.split("=", 1)[1]
    s = s.strip().rstrip(".").strip()
    s = _fix_fracs(_fix_sqrt(s))
    s = _squeeze(s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"(\d+\.\d*?)0+$", r"\1", s) if re.fullmatch(r"-?\d+\.\d+", s) else s
    s = s.rstrip(".") if re.fullmatch(r"-?\d+\.", s) else s
    s = _mixed_number(s)
    m = re.fullmatch(r"\(([A-Ea-e])\)", s)
    return m.group(1).upper() if m else s


def _squeeze(s: str) -> str:
    """Remove whitespace, except one space between a command and a letter (\\cot x)."""
    def keep(m: re.Match[str]) -> str:
        return " " if re.search(r"\\[a-zA-Z]+$", s[:m.start()]) and re.match(r"[a-zA-Z]", s[m.end():]) else ""
    return re.sub(r"\s+", keep, s)


def _strip_text_units(s: str) -> str:
    """Drop a trailing \\text{unit} (with an optional ^2) or a plain trailing unit word after a number."""
    while True:
        t = re.sub(r"(?<=\S)\s*\\text\s*{[^{}]*}\s*(\^\s*\{?\d\}?)?\s*\.?$", "", s)
        m = _WORDY_UNIT.search(t)
        if m and not (set(re.findall(r"[a-zA-Z]+", m.group(0))) & _FUNCTION_WORDS):
            t = t[:m.start()]
        if t == s or not t.strip():
            return s
        s = t


def _unwrap_text(s: str) -> str:
    """\\text{abc} -> abc everywhere."""
    return re.sub(r"\\text\s*{([^{}]*)}", r"\1", s)


def _fix_sqrt(s: str) -> str:
    """\\sqrt2 -> \\sqrt{2}."""
    return re.sub(r"\\sqrt\s*(\w)", r"\\sqrt{\1}", s)


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac 59 -> \\frac{5}{9}, \\frac{3}4 -> \\frac{3}{4}."""
    out, i = [], 0
    while True:
        j = s.find(r"\frac", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j] + r"\frac")
        k = j + 5
        for _ in range(2):
            while k < len(s) and s[k] == " ":
                k += 1
            if k < len(s) and s[k] == "{":
                inner = _balanced(s, k)
                if inner is None:
                    out.append(s[k:])
                    return "".join(out)
                out.append("{" + inner + "}")
                k += len(inner) + 2
            elif k < len(s) and s[k] == "\\":
                m = re.match(r"\\(?:[a-zA-Z]+|.)", s[k:], re.S)
                token = m.group(0) if m else "\\"
                out.append("{" + token + "}")
                k += len(token)
            elif k < len(s):
                out.append("{" + s[k] + "}")
                k += 1
        i = k


def _mixed_number(s: str) -> str:
    """1\\frac{4}{5} -> \\frac{9}{5} (an integer right before a numeric fraction is a mixed number)."""
    m = re.fullmatch(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)
    if not m or int(m.group(4)) == 0:
        return s
    whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
    return f"{m.group(1)}\\frac{{{whole * den + num}}}{{{den}}}"


# --- structure: lists, tuples, intervals, matrices ---------------------------------------------

_OPEN, _CLOSE = "([{", ")]}"


def split_top(s: str, sep: str = ",") -> list[str]:
    """Split on sep where it is not inside (), [] or {}."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(s):
        if s.startswith(r"\{", i) or s.startswith(r"\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            cur.append(s[i:i + 2])
            i += 2
            continue
        c = s[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _wrapped(s: str) -> Optional[tuple[str, str, str]]:
    """(open, inside, close) when one bracket pair ( [ wraps all of s (an interval or tuple), else None."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return s[0], s[1:-1], s[-1]


def _set_body(s: str) -> Optional[str]:
    """The inside of \\{...\\} when it wraps all of s."""
    if not (s.startswith(r"\{") and s.endswith(r"\}")):
        return None
    inner, depth = s[2:-2], 0
    for m in re.finditer(r"\\[{}]", inner):
        depth += 1 if m.group(0) == r"\{" else -1
        if depth < 0:
            return None
    return inner if depth == 0 else None


def _matrix(s: str) -> Optional[list[list[str]]]:
    """Rows of cells of a \\begin{pmatrix}...\\end{pmatrix} (or bmatrix, matrix...)."""
    m = re.fullmatch(r"\\begin\{([pbvBV]?matrix)\}(.*)\\end\{\1\}", s, re.S)
    if not m:
        return None
    rows = [r for r in m.group(2).split(r"\\") if r.strip()]
    return [[c.strip() for c in r.split("&")] for r in rows]


def _expand_pm(items: list[str]) -> list[str]:
    """a \\pm b -> a+b, a-b (each item with one \\pm), for comparing solution sets."""
    out: list[str] = []
    for item in items:
        if item.count(r"\pm") == 1:
            out += [item.replace(r"\pm", "+"), item.replace(r"\pm", "-")]
        elif item.count(r"\mp") == 1:
            out += [item.replace(r"\mp", "-"), item.replace(r"\mp", "+")]
        else:
            out.append(item)
    return out


def is_equiv(a: str, b: str) -> bool:
    """Whether two LaTeX answers are mathematically the same; never raises (unparseable means unequal)."""
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return a.strip() == b.strip()
    try:
        return _equiv(normalize(a), normalize(b))
    except Exception:  # noqa: BLE001 - any failure to understand an answer means "not shown equal"
        return False


def _equiv(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    ma, mb = _matrix(a), _matrix(b)
    if ma is not None or mb is not None:
        return ma is not None and mb is not None and len(ma) == len(mb) and all(
            len(ra) == len(rb) and all(_equiv(normalize(x), normalize(y)) for x, y in zip(ra, rb)) for ra, rb in zip(ma, mb))
    ua, ub = split_top(a, r"\cup"), split_top(b, r"\cup")
    if len(ua) > 1 or len(ub) > 1:
        return _same_multiset(ua, ub)
    sa, sb = _set_body(a), _set_body(b)
    if sa is not None or sb is not None:
        items_a = _expand_pm(split_top(sa if sa is not None else a))
        return _same_multiset(items_a, _expand_pm(split_top(sb if sb is not None else b)))
    wa, wb = _wrapped(a), _wrapped(b)
    ta = split_top(wa[1]) if wa else [a]
    tb = split_top(wb[1]) if wb else [b]
    if wa and wb and (len(ta) > 1 or len(tb) > 1):
        return wa[0] == wb[0] and wa[2] == wb[2] and len(ta) == len(tb) and all(_equiv(x, y) for x, y in zip(ta, tb))
    if (wa and len(ta) > 1) or (wb and len(tb) > 1):
        return False  # a tuple or interval never equals a bare list: "(-2,1)" is not the solutions "-2, 1"
    la, lb = _expand_pm(split_top(a)), _expand_pm(split_top(b))
    if len(la) > 1 or len(lb) > 1:
        return _same_multiset(la, lb)
    return scalar_equiv(a, b)


def _same_multiset(xs: list[str], ys: list[str]) -> bool:
    """Order-insensitive element-wise equivalence."""
    if len(xs) != len(ys):
        return False
    left = [normalize(y) for y in ys]
    for x in xs:
        nx = normalize(x)
        hit = next((i for i, y in enumerate(left) if _equiv(nx, y)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


# --- scalars: numbers, then sympy -------------------------------------------------------------

_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_LATEX_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")
_SLASH_FRACTION = re.compile(r"(-?)(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)")


def simple_number(s: str) -> Optional[Fraction]:
    """An integer, decimal, a/b or \\frac{a}{b} (with optional minus) as a Fraction, else None."""
    if _NUM.fullmatch(s):
        return Fraction(s)
    m = _LATEX_FRACTION.fullmatch(s) or _SLASH_FRACTION.fullmatch(s)
    if m and Fraction(m.group(3)) != 0:
        value = Fraction(m.group(2)) / Fraction(m.group(3))
        return -value if m.group(1) else value
    return None


def close(x: complex, y: complex) -> bool:
    """Equal within a relative tolerance of 1e-6 (absolute 1e-9 near zero)."""
    return abs(x - y) <= max(REL_TOL * max(abs(x), abs(y)), 1e-9)


def _is_word(s: str) -> bool:
    """Plain text such as 'even' or 'Navin': compared as text, never as a product of symbols."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z ]*", s)) and len(s.replace(" ", "")) >= 2 and not re.fullmatch(r"[a-z]{2}", s)


def _risky(s: str) -> bool:
    """Answers sympy should not see: too long, huge powers or factorials, or digits in a base subscript."""
    return (len(s) > MAX_SYMPY_CHARS or bool(re.search(r"\^\{?[\d.]{4,}|\d{3,}!|!!|\^\{[^{}]*\^", s))
            or bool(re.search(r"_\{?\d", s)))


def scalar_equiv(a: str, b: str) -> bool:
    """Two normalized single answers: string, exact number, then sympy numeric/symbolic comparison."""
    if a == b:
        return True
    if _is_word(a) or _is_word(b):
        return a.lower() == b.lower()
    fa, fb = simple_number(a), simple_number(b)
    if fa is not None and fb is not None:
        return fa == fb or close(float(fa), float(fb))
    if _risky(a) or _risky(b):
        return False
    ea, eb = _parse(a), _parse(b)
    if ea is None or eb is None:
        return False
    return _sympy_equal(ea, eb)


@lru_cache(maxsize=4096)
def _parse(s: str) -> Any:
    """s parsed by sympy's LaTeX parser with \\pi, i and \\infty made constants; None when it cannot be parsed."""
    try:
        import sympy
        from sympy.parsing.latex import parse_latex

        expr = parse_latex(s)
        names = {"pi": sympy.pi, "i": sympy.I, "infty": sympy.oo}
        subs = {sym: names[sym.name] for sym in expr.free_symbols if sym.name in names}
        return expr.xreplace(subs) if subs else expr
    except Exception:  # noqa: BLE001 - sympy's parser raises many kinds of errors
        return None


def _sympy_equal(ea: Any, eb: Any) -> bool:
    """Equal at several sample points (equations: sides' differences proportional)."""
    import sympy

    eqa, eqb = isinstance(ea, sympy.Equality), isinstance(eb, sympy.Equality)
    if eqa != eqb:
        return False
    if not isinstance(ea, sympy.Expr) and not eqa or not isinstance(eb, sympy.Expr) and not eqb:
        return False
    if eqa:
        return _proportional(ea.lhs - ea.rhs, eb.lhs - eb.rhs)
    symbols = sorted(ea.free_symbols | eb.free_symbols, key=lambda s: s.name)
    points = _points(symbols)
    for point in points:
        va, vb = _value(ea, point), _value(eb, point)
        if va is None or vb is None or not close(va, vb):
            return False
    return True


def _points(symbols: list[Any]) -> list[dict[Any, float]]:
    """Sample points giving each symbol a different value at each point."""
    if not symbols:
        return [{}]
    return [{sym: _SAMPLE_POINTS[(k + j) % 3] + 0.1 * j for j, sym in enumerate(symbols)} for k in range(3)]


def _proportional(da: Any, db: Any) -> bool:
    """Whether da = c * db for one nonzero constant c at all sample points (same equation)."""
    symbols = sorted(da.free_symbols | db.free_symbols, key=lambda s: s.name)
    ratios = []
    for point in _points(symbols):
        va, vb = _value(da, point), _value(db, point)
        if va is None or vb is None:
            return False
        if abs(vb) < 1e-12:
            if abs(va) > 1e-12:
                return False
            continue
        ratios.append(va / vb)
    return bool(ratios) and abs(ratios[0]) > 1e-12 and all(close(r, ratios[0]) for r in ratios)


def _value(expr: Any, point: dict[Any, float]) -> Optional[complex]:
    """expr evaluated at point as a finite complex number, or None."""
    try:
        v = complex(expr.evalf(30, subs=point) if point else expr.evalf(30))
    except Exception:  # noqa: BLE001 - non-numeric results (infinities, relations, undefined functions)
        return None
    return v if cmath.isfinite(v) else None
