"""Safe arithmetic: evaluate an expression like '(16 - 3 - 4) * 2' without eval()."""
from __future__ import annotations

import ast

MAX_LENGTH = 1000
MAX_EXPONENT = 1000


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression and return its value; use it for every arithmetic step.

    Supports numbers, + - * / // % **, parentheses and unary minus. Write numbers
    without thousands separators (1000, not 1,000) and percentages as fractions (0.15, not 15%).

    Args:
        expression: The arithmetic expression, e.g. "(16 - 3 - 4) * 2" or "80000 * 1.5 + 80000".

    Returns:
        The value as a float (whole numbers come back as e.g. 18.0).

    Raises:
        ValueError: If the expression holds anything else (names, calls, text), divides by zero or is too large.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("calculate: expected an arithmetic expression such as '2 * (3 + 4)'")
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"calculate: expression longer than {MAX_LENGTH} characters")
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"calculate: {expression!r} is not a valid arithmetic expression") from None
    try:
        return float(_eval(tree.body))
    except ZeroDivisionError:
        raise ValueError(f"calculate: division by zero in {expression!r}") from None
    except OverflowError:
        raise ValueError(f"calculate: the result of {expression!r} is too large") from None


def _eval(node: ast.AST) -> int | float:
    """The value of one node of an arithmetic expression tree."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _binary(node.op, _eval(node.left), _eval(node.right))
    shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
    raise ValueError(f"calculate: {shown!r} is not allowed (only numbers, + - * / // % ** and parentheses)")


def _binary(op: ast.operator, left: int | float, right: int | float) -> int | float:
    """Apply one arithmetic operator."""
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Div):
        return left / right
    if isinstance(op, ast.FloorDiv):
        return left // right
    if isinstance(op, ast.Mod):
        return left % right
    if isinstance(op, ast.Pow):
        if abs(right) > MAX_EXPONENT:
            raise ValueError(f"calculate: exponent {right} is too large (at most {MAX_EXPONENT})")
        result = left ** right
        if isinstance(result, complex):
            raise ValueError("calculate: a negative number to a fractional power has no real value")
        return result
    raise ValueError(f"calculate: operator {type(op).__name__} is not allowed (only + - * / // % **)")
