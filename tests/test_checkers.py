"""Answer checkers: what a user sees when a reply is judged right or wrong, and why."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgegit import mathequiv
from forgegit.checkers import BUILTIN, Verdict, extract_final_answer, get_checker
from forgegit.errors import ForgegitError
from forgegit.tasks import Task


def task(answer: str, **fields: object) -> Task:
    return Task("t1", "question?", answer, 1, dict(fields))


def judge(name: str, reply: str, answer: str) -> Verdict:
    return get_checker(name)(reply, task(answer))


# --- extract_final_answer -----------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("so we get \\boxed{\\frac{1}{2}} and then \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt{3}}{2}"),
    ("Total is 9 + 9.\n#### 18", "18"),
    ("Some work.\nFinal answer: 42 apples", "42 apples"),
    ("I think the answer is $7$.", "7"),
    ("Line one\nParis\n", "Paris"),
])
def test_final_answer_is_the_boxed_hashes_or_stated_one_else_the_last_line(reply: str, expected: str) -> None:
    """The answer shown in feedback is the one the reply marks as final."""
    assert extract_final_answer(reply) == expected


# --- default / exact / numeric / contains ---------------------------------------------------------

@pytest.mark.parametrize("reply", [
    "The total is 1,000.", "\\boxed{1000}", "$1,000", "It costs 1000 dollars", "1000.0", "#### 1,000", "answer: 1000%",
])
def test_default_accepts_a_number_written_in_any_usual_way(reply: str) -> None:
    """A correct number is not marked wrong for commas, $, %, \\boxed{}, units or a trailing .0."""
    assert judge("default", reply, "1000").passed


def test_default_says_what_number_it_expected_and_got() -> None:
    """A wrong number is reported as 'expected 27, got 9'."""
    v = judge("default", "First 3, then 3*3 = 9", "27")
    assert v == Verdict(False, "expected 27, got 9")


def test_default_says_when_the_reply_has_no_number() -> None:
    """A reply with no number at all says so instead of a confusing comparison."""
    assert judge("default", "I don't know.", "27") == Verdict(False, "no number in the reply")


def test_default_compares_text_answers_ignoring_case_spacing_and_end_punctuation() -> None:
    """A text answer like 'Paris' matches '  paris. ' but not 'Lyon'."""
    assert judge("default", "The capital:\n  paris. ", "Paris").passed
    v = judge("default", "Lyon", "Paris")
    assert not v.passed and v.feedback == "expected Paris, got Lyon"


def test_default_reads_a_trailing_subtraction_as_a_positive_number() -> None:
    """'... so 10-3' ends with 3, not -3 (a minus after a digit is subtraction); '= -3' is negative."""
    assert judge("default", "we are left with 10-3", "3").passed
    assert judge("default", "so x = -3", "-3").passed


def test_exact_requires_the_same_text() -> None:
    """exact only strips spaces at the ends: case matters."""
    assert judge("exact", "  Paris\n", "Paris").passed
    assert not judge("exact", "paris", "Paris").passed


def test_numeric_accepts_fractions_and_tolerates_rounding_noise() -> None:
    """numeric treats 3/4 as 0.75 and ignores differences below one part per million."""
    assert judge("numeric", "so it is 3/4", "0.75").passed
    assert judge("numeric", "0.3333333334", "1/3").passed
    assert judge("numeric", "0.3334", "1/3").feedback == "expected 0.3333333333, got 0.3334"


def test_numeric_with_a_non_numeric_expected_answer_fails_with_a_reason() -> None:
    """A task file whose answer is not a number is reported, not crashed on."""
    v = judge("numeric", "42", "forty-two")
    assert not v.passed and "not a number" in v.feedback


def test_contains_finds_the_expected_text_anywhere_in_the_reply() -> None:
    """contains passes when the normalized answer appears in the reply."""
    assert judge("contains", "I believe it is   NEW York city", "New York").passed
    assert judge("contains", "Boston", "New York") == Verdict(False, "reply does not contain New York")
    assert not judge("contains", "I counted 15 of them", "5").passed


# --- gsm8k ------------------------------------------------------------------------------------

GSM_ANSWER = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18\n#### 18"


def test_gsm8k_takes_the_number_after_hashes_as_ground_truth() -> None:
    """The reply is compared with the number after #### in the answer field, not the worked solution."""
    assert judge("gsm8k", "She makes $18 a day.", GSM_ANSWER).passed
    assert judge("gsm8k", "She makes 9 * 2 = 18 dollars, so \\boxed{18}", GSM_ANSWER).passed
    assert judge("gsm8k", "She sells 9 eggs", GSM_ANSWER) == Verdict(False, "expected 18, got 9")


def test_gsm8k_prefers_the_marked_answer_over_a_later_number() -> None:
    """A reply that ends with a check step still counts its #### answer."""
    assert judge("gsm8k", "#### 18\n(checked against 2 other methods)", GSM_ANSWER).passed


def test_gsm8k_handles_thousands_dollars_and_trailing_zero() -> None:
    """'$70,000.00' equals the ground truth 70000."""
    assert judge("gsm8k", "He made $70,000.00 profit.", "...\n#### 70000").passed


# --- math -------------------------------------------------------------------------------------

def test_math_reports_a_missing_box() -> None:
    """A long MATH reply that never boxes or states its answer says so."""
    v = judge("math", "We compute a lot.\nThen more work follows here.\nIt is about a half.", "\\frac{1}{2}")
    assert v == Verdict(False, "answer not in \\boxed{}")


def test_math_feedback_names_expected_and_got() -> None:
    """A wrong boxed answer is reported with both sides."""
    assert judge("math", "so \\boxed{0.6}", "\\frac{1}{2}") == Verdict(False, "expected \\frac{1}{2}, got 0.6")


def test_math_accepts_a_stated_or_bare_answer() -> None:
    """'The final answer is $\\frac12$.' and a bare one-line reply are understood."""
    assert judge("math", "Thus the final answer is $\\dfrac12$.", "\\frac{1}{2}").passed
    assert judge("math", "0.5", "\\frac{1}{2}").passed


SPELLINGS = json.loads((Path(__file__).parent / "fixtures" / "math_spellings.json").read_text(encoding="utf-8"))
EQUIVALENT = [tuple(p) for p in SPELLINGS["equivalent"]]  # (answer, the same answer spelled otherwise)


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_math_accepts_equivalent_spellings(a: str, b: str) -> None:
    """A right answer written differently (fractions, units, intervals, sets, matrices, algebra) passes."""
    assert mathequiv.is_equiv(a, b) and mathequiv.is_equiv(b, a)
    assert judge("math", f"Hence \\boxed{{{b}}}.", a).passed


DIFFERENT = [tuple(p) for p in SPELLINGS["different"]]  # (answer, a similar-looking wrong one)


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_math_rejects_different_answers(a: str, b: str) -> None:
    """A wrong answer is not accepted just because it looks similar (bases, order, brackets, signs)."""
    assert not mathequiv.is_equiv(a, b) and not mathequiv.is_equiv(b, a)


@pytest.mark.parametrize("junk", ["\\frac{", "\\foo{}}", "", "((]", "\\begin{pmatrix}", "2^{2^{100}}", "1000!", "x" * 5000])
def test_math_never_crashes_or_hangs_on_unparseable_answers(junk: str) -> None:
    """Garbage in a reply is simply wrong, quickly, with feedback."""
    start = time.monotonic()
    assert not mathequiv.is_equiv(junk, "5")
    v = judge("math", f"\\boxed{{{junk}}}", "5")
    assert not v.passed and v.feedback.startswith("expected 5")
    assert time.monotonic() - start < 2


def test_last_boxed_handles_nested_braces_and_fbox() -> None:
    """The boxed answer keeps its inner braces; no box gives None."""
    assert mathequiv.last_boxed("a \\boxed{1} b \\boxed{\\frac{a}{b^{2}}} c") == "\\frac{a}{b^{2}}"
    assert mathequiv.last_boxed("\\fbox{7}") == "7"
    assert mathequiv.last_boxed("\\boxed 5.") == "5"
    assert mathequiv.last_boxed("no box") is None


def test_normalize_removes_presentation_only_markup() -> None:
    """Spacing, \\left/\\right, \\dfrac, degrees, units, dollars and `x =` do not matter."""
    assert mathequiv.normalize("x = \\left( \\dfrac{1}{2} \\right)^\\circ") == "(\\frac{1}{2})"
    assert mathequiv.normalize("\\$1,\\!000.") == "1000"
    assert mathequiv.normalize("12 \\text{ cm}^2") == "12"


# --- custom checkers ------------------------------------------------------------------------

@pytest.fixture
def checker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module my_checks.py in the current directory, as a user would write it."""
    (tmp_path / "my_checks.py").write_text(
        "def same(reply, expected):\n    return reply.strip().lower() == expected.lower()\n\n"
        "def explained(reply, expected):\n    return (reply == expected, 'length ' + str(len(reply)))\n\n"
        "def with_task(reply, expected, task):\n    return reply == task.fields['alias']\n\n"
        "def broken(reply, expected):\n    raise ValueError('bad input')\n\n"
        "def odd(reply, expected):\n    return 'yes'\n\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_checks", raising=False)
    return "my_checks"


def test_custom_checker_bool_gets_expected_got_feedback(checker_module: str) -> None:
    """A custom checker returning False still tells the optimizer what was expected."""
    check = get_checker(f"{checker_module}:same")
    assert check("PARIS", task("paris")).passed
    assert check("Lyon", task("paris")) == Verdict(False, "expected paris, got Lyon")


def test_custom_checker_feedback_text_is_kept(checker_module: str) -> None:
    """A (bool, text) result keeps the checker's own explanation."""
    assert get_checker(f"{checker_module}:explained")("abc", task("x")) == Verdict(False, "length 3")


def test_custom_checker_can_read_the_task(checker_module: str) -> None:
    """A three-parameter checker receives the task with its other fields."""
    assert get_checker(f"{checker_module}:with_task")("Big Apple", task("New York", alias="Big Apple")).passed


def test_custom_checker_that_raises_fails_the_task_not_the_run(checker_module: str) -> None:
    """An exception inside a user's checker becomes a failed verdict naming the checker."""
    v = get_checker(f"{checker_module}:broken")("x", task("y"))
    assert v == Verdict(False, "checker my_checks:broken raised ValueError: bad input")


def test_custom_checker_with_a_wrong_return_type_fails_with_a_reason(checker_module: str) -> None:
    """A checker returning neither bool nor (bool, text) is reported."""
    v = get_checker(f"{checker_module}:odd")("x", task("y"))
    assert not v.passed and "returned str" in v.feedback


@pytest.mark.parametrize("name, message", [
    ("nonsense", "unknown checker 'nonsense'"),
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("my_checks:missing", "has no attribute 'missing'"),
    ("my_checks:NOT_CALLABLE", "is not callable"),
    ("my_checks:", "expected module:function"),
])
def test_bad_checker_names_are_one_line_errors(checker_module: str, name: str, message: str) -> None:
    """A typo in `checker =` is a clear one-line error naming it, not a traceback."""
    with pytest.raises(ForgegitError) as err:
        get_checker(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_import_error_inside_the_module_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checker module that fails while importing names the module and the error."""
    (tmp_path / "crashy_checks.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ForgegitError, match="crashy_checks.*RuntimeError: boom"):
        get_checker("crashy_checks:f")
    assert str(tmp_path) not in sys.path


def test_custom_checker_is_found_in_the_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`checker = "repo_checks:f"` works when forgegit runs from a subdirectory of the repository."""
    (tmp_path / "repo_checks.py").write_text("def f(reply, expected):\n    return reply == expected\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delitem(sys.modules, "repo_checks", raising=False)
    assert get_checker("repo_checks:f", root=tmp_path)("7", task("7")).passed
    assert str(tmp_path) not in sys.path


def test_every_builtin_checker_is_available_by_name() -> None:
    """The names documented in forgegit.toml all resolve."""
    assert set(BUILTIN) == {"default", "exact", "numeric", "contains", "math", "gsm8k"}
    for name in BUILTIN:
        assert get_checker(name) is BUILTIN[name]


# --- robustness ---------------------------------------------------------------------------------

_LATEX_BITS = st.sampled_from([
    "\\frac", "\\dfrac", "\\sqrt", "{", "}", "(", ")", "[", "]", "\\{", "\\}", ",", "\\pm", "\\cup", "\\infty", "\\pi",
    "\\text{", "\\boxed{", "\\left(", "\\right)", "^", "_", "\\circ", "\\$", "%", "=", "-", ".", "1", "23", "x", " ",
    "\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "&", "####", "answer is", "\n", "i", "e", "/", "!", "\\",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LATEX_BITS, max_size=25).map("".join), st.lists(_LATEX_BITS, max_size=12).map("".join))
def test_no_checker_ever_raises_on_arbitrary_replies_and_answers(reply: str, answer: str) -> None:
    """Whatever the model writes (and whatever the task file holds), a checker returns a Verdict with feedback."""
    for name, check in BUILTIN.items():
        v = check(reply, task(answer or "0"))
        assert isinstance(v, Verdict) and isinstance(v.passed, bool) and v.feedback, name
    assert isinstance(mathequiv.is_equiv(reply, answer), bool)
    assert isinstance(mathequiv.normalize(reply), str)
