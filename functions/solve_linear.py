"""Solve one linear equation in one unknown, e.g. 'x + 2*x + 30 = 90'."""
from __future__ import annotations

import ast

MAX_LENGTH = 1000


def solve_linear(equation: str, variable: str = "x") -> float:
    """Solve a linear equation in one unknown and return the unknown's value.

    Write products with * (3*x, not 3x). Useful when a word problem says "twice as many as"
    or "the total is": translate it into one equation and solve it here.

    Args:
        equation: The equation with exactly one '=', e.g. "x + 2*x + 30 = 90" or "(x - 4) / 2 = 3*x".
        variable: The unknown's name as used in the equation (default "x").

    Returns:
        The value of the unknown.

    Raises:
        ValueError: If the text is not one linear equation in `variable` (no '=', other names, x*x, x in a denominator)
            or it has no single solution.
    """
    if not isinstance(equation, str) or equation.count("=") != 1:
        raise ValueError("solve_linear: expected one equation with exactly one '=', e.g. 'x + 3 = 10'")
    if len(equation) > MAX_LENGTH:
        raise ValueError(f"solve_linear: equation longer than {MAX_LENGTH} characters")
    left, right = (_side(part, variable) for part in equation.replace("^", "**").split("="))
    coefficient, constant = left[0] - right[0], right[1] - left[1]
    if abs(coefficient) < 1e-12:
        kind = "every value is a solution" if abs(constant) < 1e-12 else "there is no solution"
        raise ValueError(f"solve_linear: {variable} cancels out of {equation!r}: {kind}")
    return constant / coefficient


def _side(text: str, variable: str) -> tuple[float, float]:
    """One side of the equation as (coefficient of the unknown, constant)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"solve_linear: {text.strip()!r} is not a valid expression (write 3*x, not 3x)") from None
    return _linear(tree.body, variable)


def _linear(node: ast.AST, variable: str) -> tuple[float, float]:
    """node as a*variable + b, given as (a, b)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return 0.0, float(node.value)
    if isinstance(node, ast.Name) and node.id == variable:
        return 1.0, 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        a, b = _linear(node.operand, variable)
        return (-a, -b) if isinstance(node.op, ast.USub) else (a, b)
    if isinstance(node, ast.BinOp):
        return _combine(node.op, _linear(node.left, variable), _linear(node.right, variable))
    shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
    raise ValueError(f"solve_linear: {shown!r} is not allowed (only numbers, {variable}, + - * / and parentheses)")


def _combine(op: ast.operator, left: tuple[float, float], right: tuple[float, float]) -> tuple[float, float]:
    """Combine two linear parts with one operator, refusing anything non-linear."""
    (a, b), (c, d) = left, right
    if isinstance(op, ast.Add):
        return a + c, b + d
    if isinstance(op, ast.Sub):
        return a - c, b - d
    if isinstance(op, ast.Mult):
        if a and c:
            raise ValueError("solve_linear: the unknown times itself is not linear")
        return a * d + c * b, b * d
    if isinstance(op, ast.Div):
        if c:
            raise ValueError("solve_linear: the unknown in a denominator is not linear (multiply it out first)")
        if d == 0:
            raise ValueError("solve_linear: division by zero")
        return a / d, b / d
    if isinstance(op, ast.Pow) and not a and not c:
        return 0.0, float(b ** d)
    raise ValueError(f"solve_linear: operator {type(op).__name__} is not allowed in a linear equation")
