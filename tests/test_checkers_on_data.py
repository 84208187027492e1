"""The gsm8k and math checkers on the bundled real data sets: right answers pass, wrong ones fail."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from math_restyle import restyled

from forgegit.checkers import get_checker, gsm8k_expected, parse_number
from forgegit.config import parse_config
from forgegit.mathequiv import is_equiv
from forgegit.tasks import Task, load_tasks

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
SHIFTS = (1, 7)  # problem i's solution against problem (i + shift)'s answer: fixed derangements


def gsm8k_tasks() -> list[Task]:
    return [t for f in ("test.jsonl", "train-first500.jsonl") for t in load_tasks(DATA / "gsm8k" / f).tasks]


def math_tasks() -> list[Task]:
    return list(load_tasks(DATA / "math500" / "test.jsonl", "problem", "answer").tasks)


@pytest.mark.parametrize("name", ["gsm8k/test.jsonl", "gsm8k/train-first500.jsonl", "math500/test.jsonl"])
def test_bundled_data_is_byte_identical_to_its_documented_source(name: str) -> None:
    """The copy in examples/data has the sha256 its SOURCE.md records, and says it is MIT licensed."""
    path = DATA / name
    source = (path.parent / "SOURCE.md").read_text(encoding="utf-8")
    assert "MIT" in source
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest in source, f"{name}: sha256 {digest} not in SOURCE.md"


def test_every_math500_solution_is_judged_equal_to_its_own_answer() -> None:
    """All 500 worked MATH solutions pass the math checker against their own answers."""
    check = get_checker("math")
    tasks = math_tasks()
    failed = [t.fields["unique_id"] for t in tasks if not check(t.fields["solution"], t).passed]
    assert len(tasks) == 500 and failed == []


def test_every_math500_answer_restated_in_prose_is_judged_equal() -> None:
    """'The final answer is $...$.' with each MATH answer is understood as that answer."""
    check = get_checker("math")
    failed = [t.fields["unique_id"] for t in math_tasks() if not check(f"So the final answer is ${t.answer}$.", t).passed]
    assert failed == []


def test_math500_answers_restyled_are_still_judged_equal() -> None:
    """Each real answer rewritten without changing its value (\\dfrac, spaces, \\left(, 1,000, .0, a/b, 0.25) passes."""
    check = get_checker("math")
    failed, total = [], 0
    for t in math_tasks():
        for v in restyled(t.answer):
            for reply in (f"Thus \\boxed{{{v}}}.", f"So the final answer is ${v}$."):
                total += 1
                if not check(reply, t).passed:
                    failed.append((t.fields["unique_id"], reply))
    assert total > 2000 and failed == []


def test_math500_near_misses_are_judged_wrong() -> None:
    """Each real answer plus 2, minus 1/7, or doubled is rejected: equivalence is not a loose match."""
    check = get_checker("math")
    passed = []
    for t in math_tasks():
        a = t.answer
        for v in (f"{a}+2", f"{a} - \\frac{{1}}{{7}}", f"2\\cdot {a}" if a != "0" else "1"):
            if check(f"\\boxed{{{v}}}", t).passed:
                passed.append((t.fields["unique_id"], v))
    assert passed == []


def test_math500_solutions_against_other_problems_answers_fail() -> None:
    """A solution checked against another problem's answer fails, unless the two answers are truly equal."""
    check = get_checker("math")
    tasks = math_tasks()
    false_positives, allowed = [], 0
    for shift in SHIFTS:
        for i, t in enumerate(tasks):
            other = tasks[(i + shift) % len(tasks)]
            genuinely_equal = is_equiv(t.answer, other.answer)
            allowed += genuinely_equal
            if check(t.fields["solution"], other).passed and not genuinely_equal:
                false_positives.append((t.fields["unique_id"], other.fields["unique_id"]))
    assert false_positives == []
    assert allowed <= 10  # equal answers by coincidence (e.g. two problems whose answer is 3), not a lax checker


def test_answers_that_are_equal_by_coincidence_look_the_same() -> None:
    """The allowance for shifted pairs is only answers that are the same number or spelling (3 and 3, 5 and x=5)."""
    tasks = math_tasks()
    for shift in SHIFTS:
        for i, t in enumerate(tasks):
            other = tasks[(i + shift) % len(tasks)]
            if is_equiv(t.answer, other.answer):
                assert re.sub(r"^x\s*=\s*", "", other.answer) == re.sub(r"^x\s*=\s*", "", t.answer)


def test_every_gsm8k_solution_is_judged_equal_to_its_own_answer() -> None:
    """All 1,319 test + 500 train GSM8K worked solutions pass the gsm8k checker against their answer field."""
    check = get_checker("gsm8k")
    tasks = gsm8k_tasks()
    failed = [t.line for t in tasks if not check(t.answer, t).passed]
    assert len(tasks) == 1819 and failed == []


def test_gsm8k_solutions_against_other_problems_answers_fail_unless_the_numbers_coincide() -> None:
    """A GSM8K solution never passes for another problem, except when both final numbers are the same."""
    check = get_checker("gsm8k")
    for f in ("test.jsonl", "train-first500.jsonl"):
        tasks = load_tasks(DATA / "gsm8k" / f).tasks
        for shift in SHIFTS:
            for i, t in enumerate(tasks):
                other = tasks[(i + shift) % len(tasks)]
                same = parse_number(gsm8k_expected(t.answer)) == parse_number(gsm8k_expected(other.answer))
                v = check(t.answer, other)
                assert v.passed == same, (f, t.line, other.line, v.feedback)
                if not same:
                    assert v.feedback.startswith("expected ")


# --- the examples built on the data -------------------------------------------------------------

EXAMPLES = DATA.parent


def _make_splits(example: str) -> object:
    spec = importlib.util.spec_from_file_location(f"make_splits_{example}", EXAMPLES / example / "make_splits.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("example, sizes", [("gsm8k", (40, 40, 100)), ("math", (40, 40, 100))])
def test_example_splits_are_exactly_what_make_splits_regenerates(example: str, sizes: tuple[int, int, int]) -> None:
    """The committed train/val/test.jsonl are byte-for-byte what make_splits.py draws (seed 2024), and disjoint."""
    module = _make_splits(example)
    drawn = module.splits(module.load(module.SOURCE))  # type: ignore[attr-defined]
    ids: set[str] = set()
    for name, size in zip(("train", "val", "test"), sizes):
        text = (EXAMPLES / example / f"{name}.jsonl").read_text(encoding="utf-8")
        assert text == "".join(json.dumps(r) + "\n" for r in drawn[name])
        assert len(drawn[name]) == size
        ids |= {str(r["id"]) for r in drawn[name]}
    assert len(ids) == sum(sizes)


@pytest.mark.parametrize("toml, checker", [
    ("examples/gsm8k/forgegit.toml", "gsm8k"), ("examples/math/forgegit.toml", "math"), ("forgegit.toml", "gsm8k"),
])
def test_example_configs_are_valid_and_their_task_files_load(toml: str, checker: str) -> None:
    """Each forgegit.toml parses, names real task files (relative to itself), and its checker passes the worked solutions."""
    path = EXAMPLES.parent / toml
    settings = parse_config(path.read_text(encoding="utf-8"), str(path))
    assert settings.checker == checker
    check = get_checker(settings.checker)
    for rel in (settings.tasks, settings.val, settings.test):
        tasks = load_tasks(path.parent / rel, settings.question_field, settings.answer_field).tasks
        replies = [t.fields.get("solution", t.answer) for t in tasks]
        assert all(check(str(r), t).passed for r, t in zip(replies, tasks))
