"""Answer checkers: (final reply, task) -> Verdict(passed, feedback), built in or `module:function`."""
from __future__ import annotations

import importlib
import inspect
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from . import mathequiv
from .errors import ForgegitError
from .tasks import Task

SHOWN_CHARS = 80  # longest answer quoted in feedback


@dataclass(frozen=True)
class Verdict:
    passed: bool
    feedback: str


Checker = Callable[[str, Task], Verdict]


# --- extracting answers ---------------------------------------------------------------------

_STATED = re.compile(r"(?:final answer|answer)\s*(?:is\b|:|=)\s*:?\s*(.+)", re.I)
_HASHES = re.compile(r"####\s*(.+)")


def _clean(s: str) -> str:
    """Trim spaces, surrounding $...$ / ** markup and a trailing period."""
    s = s.strip().strip("*").strip().rstrip(".").strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    if s.startswith(r"\(") and s.endswith(r"\)"):
        s = s[2:-2].strip()
    return s.rstrip(".").strip()


def stated_answer(reply: str) -> Optional[str]:
    """The final answer the reply marks: last \\boxed{}, else the later of the last `#### x` and the last
    `final answer: x`/`answer is x` (a small model writes "#### 1" then "The answer is: 3": its last word
    is 3); else None."""
    boxed = mathequiv.last_boxed(reply)
    if boxed is not None:
        return boxed.strip()
    marked = [m for m in (_last(_HASHES, reply), _last(_STATED, reply)) if m is not None]
    if marked:
        return _clean(max(marked, key=lambda m: m.start()).group(1))
    return None


def _last(pattern: "re.Pattern[str]", text: str) -> Optional["re.Match[str]"]:
    found = None
    for found in pattern.finditer(text):
        pass
    return found


def extract_final_answer(reply: str) -> str:
    """Last \\boxed{...} (nested braces), or `#### x`, or `final answer: x`/`answer is x`, else the last line."""
    found = stated_answer(reply)
    if found is not None:
        return found
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    return _clean(lines[-1]) if lines else ""


# --- numbers --------------------------------------------------------------------------------

_SIGN = r"(?:(?<![\w)\]}])-)?"  # a minus sign, not the subtraction in "10-3"
_NUMBER = re.compile(_SIGN + r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_FRACTION = re.compile(rf"({_SIGN}\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_NUMBER_WITH_UNIT = re.compile(rf"({_NUMBER.pattern})(?:\s*/\s*(\d+(?:\.\d+)?))?(?:\s*[A-Za-z][A-Za-z .]*)?")


def parse_number(s: str) -> Optional[float]:
    """s as a number when it is one (tolerant of 1,000, $, %, \\boxed{}, a/b, trailing .0 and units)."""
    t = mathequiv.last_boxed(s) or s
    t = t.strip().replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "").replace("\\!", "").strip()
    t = t.rstrip(".").strip()
    frac = mathequiv.simple_number(mathequiv.normalize(t)) if "\\frac" in t else None
    if frac is not None:
        return float(frac)
    m = _NUMBER_WITH_UNIT.fullmatch(t)
    if not m:
        return None
    num, den = m.group(1), m.group(2)
    value = float(num.replace(",", ""))
    if den is not None:
        if float(den) == 0:
            return None
        value /= float(den)
    return value


def last_number(text: str, fractions: bool = False) -> Optional[float]:
    """The last number in text (commas as thousands separators; with fractions=True also a/b)."""
    text = text.replace("\\!", "").replace("\\,", "")
    candidates: list[tuple[int, int, float]] = []  # (end, length, value): the last, longest wins
    for m in _NUMBER.finditer(text):
        candidates.append((m.end(), len(m.group(0)), float(m.group(0).replace(",", ""))))
    if fractions:
        for m in _FRACTION.finditer(text):
            if float(m.group(2)) != 0:
                candidates.append((m.end(), len(m.group(0)), float(m.group(1)) / float(m.group(2))))
    return max(candidates)[2] if candidates else None


def numbers_equal(x: float, y: float, rel: float = 1e-6) -> bool:
    """Equal within a relative tolerance (absolute 1e-9 near zero)."""
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)


def fmt(x: float) -> str:
    """A number as people write it: 27, not 27.0."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.10g}"


def _shown(s: str) -> str:
    """s on one line, shortened for feedback."""
    s = " ".join(s.split())
    return s if len(s) <= SHOWN_CHARS else s[:SHOWN_CHARS - 3] + "..."


def normalize_text(s: str) -> str:
    """Lowercase, single spaces, no punctuation or markup at the ends."""
    s = " ".join(s.lower().split())
    return s.strip(" \t.,;:!?\"'`*()[]{}$")


# --- the built-in checkers -------------------------------------------------------------------

def _numeric_verdict(reply: str, expected: float, fractions: bool) -> Verdict:
    found = stated_answer(reply)
    value = None
    if found is not None:
        value = parse_number(found)
        if value is None:
            value = last_number(found, fractions)
    if value is None:
        value = last_number(reply, fractions)
    if value is None:
        return Verdict(False, "no number in the reply")
    if numbers_equal(value, expected):
        return Verdict(True, f"correct: {fmt(expected)}")
    return Verdict(False, f"expected {fmt(expected)}, got {fmt(value)}")


def _expected_number(answer: str) -> Optional[float]:
    value = parse_number(answer.strip())
    if value is None:
        m = _FRACTION.fullmatch(answer.strip())
        if m and float(m.group(2)) != 0:
            value = float(m.group(1)) / float(m.group(2))
    return value


def check_default(reply: str, task: Task) -> Verdict:
    """Numeric when the expected answer is a number, normalized text otherwise."""
    expected = _expected_number(task.answer)
    if expected is not None:
        return _numeric_verdict(reply, expected, fractions=True)
    got = extract_final_answer(reply)
    if normalize_text(got) == normalize_text(task.answer):
        return Verdict(True, f"correct: {_shown(task.answer)}")
    return Verdict(False, f"expected {_shown(task.answer)}, got {_shown(got) or 'an empty reply'}")


def check_exact(reply: str, task: Task) -> Verdict:
    """The reply (or its marked final answer) equals the expected answer after stripping spaces at the ends."""
    want = task.answer.strip()
    got = reply.strip()
    if got == want or extract_final_answer(reply).strip() == want:
        return Verdict(True, f"correct: {_shown(want)}")
    return Verdict(False, f"expected exactly {_shown(want)}, got {_shown(extract_final_answer(reply)) or 'an empty reply'}")


def check_numeric(reply: str, task: Task) -> Verdict:
    """The reply's final number equals the expected number (relative tolerance 1e-6; fractions allowed)."""
    expected = _expected_number(task.answer)
    if expected is None:
        return Verdict(False, f"expected answer {_shown(task.answer)} is not a number")
    return _numeric_verdict(reply, expected, fractions=True)


def check_contains(reply: str, task: Task) -> Verdict:
    """The normalized expected answer appears in the normalized reply."""
    want = normalize_text(task.answer)
    if want and re.search(rf"(?<!\w){re.escape(want)}(?!\w)", normalize_text(reply)):
        return Verdict(True, f"correct: reply contains {_shown(task.answer)}")
    return Verdict(False, f"reply does not contain {_shown(task.answer)}")


def gsm8k_expected(answer: str) -> str:
    """The ground truth of a GSM8K answer field: the text after `####` (or the whole field)."""
    m = _HASHES.findall(answer)
    return (m[-1] if m else answer).strip()


def check_gsm8k(reply: str, task: Task) -> Verdict:
    """GSM8K: the number after `####` in the answer field vs the reply's `####`/\\boxed{} answer or last number."""
    want_text = gsm8k_expected(task.answer)
    expected = parse_number(want_text)
    if expected is None:
        got = extract_final_answer(reply)
        if normalize_text(got) == normalize_text(want_text):
            return Verdict(True, f"correct: {_shown(want_text)}")
        return Verdict(False, f"expected {_shown(want_text)}, got {_shown(got) or 'an empty reply'}")
    return _numeric_verdict(reply, expected, fractions=False)


def _math_answer(reply: str) -> Optional[str]:
    """The final answer of a MATH-style reply: last \\boxed{}, a stated final answer, or a one-line reply."""
    found = stated_answer(reply)
    if found is not None:
        return found
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) <= SHOWN_CHARS:
        return _clean(lines[0])
    return None


def check_math(reply: str, task: Task) -> Verdict:
    """MATH: the reply's \\boxed{} (or stated) answer is mathematically equivalent to the LaTeX answer."""
    got = _math_answer(reply)
    if got is None:
        return Verdict(False, "answer not in \\boxed{}")
    if mathequiv.is_equiv(got, task.answer):
        return Verdict(True, f"correct: {_shown(task.answer)}")
    return Verdict(False, f"expected {_shown(task.answer)}, got {_shown(got) or 'an empty answer'}")


def cut_off_verdict(name: str, reply: str) -> Optional[Verdict]:
    """A failing verdict for a reply cut off at max_tokens that never marked its answer, when the built-in
    checker `name` would otherwise judge it by whatever number or line the cut left last; else None."""
    if name in BUILTIN and name != "contains" and stated_answer(reply) is None:
        return Verdict(False, "no answer stated before the cut")
    return None


BUILTIN: dict[str, Checker] = {
    "default": check_default,
    "exact": check_exact,
    "numeric": check_numeric,
    "contains": check_contains,
    "math": check_math,
    "gsm8k": check_gsm8k,
}


# --- custom checkers ---------------------------------------------------------------------------

def _wants_task(fn: Callable[..., Any]) -> bool:
    """Whether fn takes a third (task) argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def wrap_custom(name: str, fn: Callable[..., Any]) -> Checker:
    """A Checker from `fn(reply, expected[, task]) -> bool | (bool, str)` that never raises."""
    with_task = _wants_task(fn)

    def check(reply: str, task: Task) -> Verdict:
        try:
            result = fn(reply, task.answer, task) if with_task else fn(reply, task.answer)
        except Exception as exc:  # noqa: BLE001 - a user's checker must not crash the evaluation
            return Verdict(False, _shown(f"checker {name} raised {type(exc).__name__}: {exc}"))
        return _to_verdict(name, result, reply, task)

    check.__name__ = f"custom_{name.replace(':', '_').replace('.', '_')}"
    return check


def _to_verdict(name: str, result: Any, reply: str, task: Task) -> Verdict:
    """A custom checker's result as a Verdict (bool gets derived feedback; (bool, text) keeps its text)."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        return Verdict(result[0], str(result[1]))
    if isinstance(result, bool):
        if result:
            return Verdict(True, f"correct: {_shown(task.answer)}")
        return Verdict(False, f"expected {_shown(task.answer)}, got {_shown(extract_final_answer(reply)) or 'an empty reply'}")
    return Verdict(False, _shown(f"checker {name} returned {type(result).__name__}, expected bool or (bool, str)"))


def get_checker(name: str, root: str | Path | None = None) -> Checker:
    """A built-in checker by name, or `module:function` imported from the current directory (and root, if given)."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise ForgegitError(f"unknown checker {name!r} (built-in: {', '.join(BUILTIN)}; or module:function)")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ForgegitError(f"checker {name!r}: expected module:function")
    fn = getattr(_import(name, module_name, root), attr, None)
    if fn is None:
        raise ForgegitError(f"checker {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ForgegitError(f"checker {name!r}: {attr!r} is not callable")
    return wrap_custom(name, fn)


def _import(name: str, module_name: str, root: str | Path | None) -> Any:
    """Import module_name with the current directory (and root) on sys.path for the duration."""
    wanted = [str(Path.cwd())] + ([str(Path(root).resolve())] if root else [])
    added = [d for d in dict.fromkeys(wanted) if d not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - import errors of user code, whatever they are
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        raise ForgegitError(f"checker {name!r}: cannot import {module_name!r} ({detail})") from None
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)
