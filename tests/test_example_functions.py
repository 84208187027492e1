"""The project's own example functions (top-level functions/): correct answers and clear errors for the agent."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from forgegit.functions import check_paths, load_specs

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def load(name: str) -> Callable[..., Any]:
    """The public function of functions/<name>.py, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", FUNCTIONS / f"{name}.py")
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: Callable[..., Any] = getattr(module, name)
    return fn


calculate = load("calculate")
percent_of = load("percent_of")
solve_linear = load("solve_linear")


def test_example_functions_follow_the_function_file_rules() -> None:
    """forgegit check passes on the project's own functions/, and each becomes a tool with documented parameters."""
    assert check_paths([str(FUNCTIONS)]) == []
    files = {f"functions/{p.name}": p.read_bytes() for p in FUNCTIONS.glob("*.py")}
    specs, problems = load_specs(files)
    assert problems == []
    assert {s.name for s in specs} == {"calculate", "percent_of", "solve_linear"}
    for s in specs:
        for prop in s.parameters["properties"].values():
            assert prop.get("description"), f"{s.name}: a parameter has no description"


@pytest.mark.parametrize("expression, value", [
    ("16 - 3 - 4", 9.0), ("(16 - 3 - 4) * 2", 18.0), ("80000 * 1.5 + 80000", 200000.0), ("-3 + 5", 2.0),
    ("7 / 2", 3.5), ("7 // 2", 3.0), ("7 % 3", 1.0), ("2 ** 10", 1024.0), ("2^3", 8.0), ("-(2 + 3) * -2", 10.0),
    ("  42 ", 42.0), ("3 × 4 ÷ 6", 2.0),
])
def test_calculate_evaluates_arithmetic(expression: str, value: float) -> None:
    """The agent's arithmetic comes back right, as a float."""
    assert calculate(expression) == value


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('ls')", "is not allowed"),
    ("x + 1", "'x' is not allowed"),
    ("abs(-3)", "is not allowed"),
    ("'a' * 3", "is not allowed"),
    ("1 / 0", "division by zero"),
    ("2 ** 100000", "exponent 100000 is too large"),
    ("10.0 ** 400", "too large"),
    ("1 +", "not a valid arithmetic expression"),
    ("", "expected an arithmetic expression"),
    ("1 < 2", "is not allowed"),
    ("True + 1", "is not allowed"),
    ("(-8) ** 0.5", "no real value"),
])
def test_calculate_rejects_anything_but_arithmetic_with_a_clear_message(expression: str, message: str) -> None:
    """Code, names, calls and impossible arithmetic raise ValueError saying what is wrong (no eval)."""
    with pytest.raises(ValueError, match="calculate: ") as err:
        calculate(expression)
    assert message in str(err.value)


def test_percent_of() -> None:
    """15% of 80 is 12; 150% of 80,000 is 120,000."""
    assert percent_of(15, 80) == 12.0
    assert percent_of(150, 80000) == 120000.0
    assert percent_of(0, 5) == 0.0


@pytest.mark.parametrize("equation, variable, value", [
    ("x + 2*x + 30 = 90", "x", 20.0), ("(x - 4) / 2 = 3*x", "x", -0.8), ("2*(n + 3) = n - 1", "n", -7.0),
    ("90 = 3*x", "x", 30.0), ("x/4 + 2**3 = 10", "x", 8.0), ("-x = 5", "x", -5.0),
])
def test_solve_linear_solves_one_unknown(equation: str, variable: str, value: float) -> None:
    """Word-problem equations come back with the unknown's value."""
    assert solve_linear(equation, variable) == pytest.approx(value)


@pytest.mark.parametrize("equation, message", [
    ("x + 3", "exactly one '='"), ("x*x = 4", "not linear"), ("1/x = 2", "denominator"), ("3x = 6", "write 3*x"),
    ("x + y = 3", "'y' is not allowed"), ("x = x + 1", "no solution"), ("2*x = x + x", "every value"),
    ("x = 1 = 2", "exactly one '='"),
])
def test_solve_linear_explains_what_it_cannot_solve(equation: str, message: str) -> None:
    """A non-linear or malformed equation raises ValueError telling the agent how to fix it."""
    with pytest.raises(ValueError, match="solve_linear: ") as err:
        solve_linear(equation)
    assert message in str(err.value)
