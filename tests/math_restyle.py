"""Presentation-only rewrites of a MATH answer, shared by tests/test_checkers_on_data.py and bench/math_grader.py."""
from __future__ import annotations

import re
from fractions import Fraction

_NOT_THOUSANDS = r",(?!(?:\\!)?\s?\d{3}(?!\d))"  # a comma that does not separate thousands (10,\!080, 58,500)


def restyled(answer: str, *, space_thousands: bool = True) -> list[str]:
    """answer rewritten without changing its value: \\dfrac, spaces around `,` `+` `=`, \\left/\\right,
    1,000, 12.0, a/b, decimals. space_thousands=False keeps a thousands separator whole (`10 , \\!080`
    reads as a list to a grader that does not know forgegit's leniency)."""
    commas = "," if space_thousands else _NOT_THOUSANDS
    spaced = re.sub(rf"\s*([+=]|{commas})\s*", r" \1 ", answer)
    out = [answer.replace(r"\frac", r"\dfrac"), spaced, f"  {answer} "]
    if r"\sqrt[" not in answer and r"\left" not in answer:
        out.append(answer.replace("(", r"\left(").replace(")", r"\right)").replace("[", r"\left[").replace("]", r"\right]"))
    if re.fullmatch(r"-?\d+", answer):
        out += [f"{int(answer):,}", answer + ".0"]
    m = re.fullmatch(r"(-?)\\frac\{?(\d+)\}?\{?(\d+)\}?", answer)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        out.append(f"{value.numerator}/{value.denominator}")
        if len(str(float(value))) < 12 and Fraction(str(float(value))) == value:
            out.append(str(float(value)))
    return [v for v in out if v != answer]
