"""Paired gate statistics: exact McNemar, paired bootstrap, the CI of the difference, decide() and compare()."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgegit.errors import ForgegitError
from forgegit.records import EvalResult, TaskResult, Usage
from forgegit.gate import compare, decide
from forgegit.stats import (
    mcnemar_exact,
    mcnemar_exact_two_sided,
    paired_bootstrap,
    paired_diff_ci,
)


def outcomes(passed: list[int]) -> dict[str, bool]:
    return {f"t{i:02d}": bool(p) for i, p in enumerate(passed)}


def noisy_epoch() -> tuple[dict[str, bool], dict[str, bool]]:
    """20 tasks, half passing; a useless epoch flips 3 fail->pass and 1 pass->fail by noise."""
    before = [1] * 10 + [0] * 10
    after = list(before)
    after[10] = after[11] = after[12] = 1
    after[0] = 0
    return outcomes(before), outcomes(after)


# --- McNemar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "up, down, expected",
    [(5, 0, 1 / 32), (6, 1, 8 / 128), (3, 1, 5 / 16), (3, 0, 1 / 8), (0, 4, 1.0), (0, 0, 1.0), (1, 1, 3 / 4)],
)
def test_mcnemar_one_sided_p_values_match_the_binomial_tail(up: int, down: int, expected: float) -> None:
    """The gate's p-value is P(X >= up) for X ~ Binomial(up + down, 1/2), exactly."""
    assert mcnemar_exact(up, down) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("b, c, expected", [(1, 9, 0.021484375), (9, 1, 0.021484375), (0, 0, 1.0), (5, 5, 1.0), (0, 5, 1 / 16)])
def test_mcnemar_two_sided_p_values_match_known_values(b: int, c: int, expected: float) -> None:
    """The two-sided exact test doubles the smaller tail and is capped at 1."""
    assert mcnemar_exact_two_sided(b, c) == pytest.approx(expected, abs=1e-15)


def test_mcnemar_handles_many_tasks_without_overflow() -> None:
    """Large task sets still give a valid p-value (no float overflow in the binomial)."""
    p = mcnemar_exact(1100, 1000)
    assert 0 < p < 0.02


def test_mcnemar_rejects_negative_counts() -> None:
    """A negative flip count is a bug upstream and fails loudly."""
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


# --- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same gate verdict on every run; another seed may differ."""
    before = [1, 0, 1, 0, 0, 1, 0, 0, 1, 0] * 3
    after = [1, 1, 1, 0, 1, 0, 0, 1, 1, 0] * 3
    first = paired_bootstrap(before, after, seed=7, resamples=2000)
    assert paired_bootstrap(before, after, seed=7, resamples=2000) == first
    assert first[0] == pytest.approx(0.2)


def test_bootstrap_when_every_task_improves_p_is_zero() -> None:
    """All tasks going fail -> pass is overwhelming evidence: p = 0 and the CI sits at +1."""
    delta, low, high, p = paired_bootstrap([0] * 12, [1] * 12)
    assert (delta, low, high, p) == (1.0, 1.0, 1.0, 0.0)


def test_bootstrap_when_nothing_changes_p_is_one() -> None:
    """An epoch that changes nothing never looks like an improvement."""
    assert paired_bootstrap([1, 0, 1, 0], [1, 0, 1, 0]) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_ci_contains_delta_and_empty_input_is_neutral() -> None:
    """The reported interval brackets the observed delta; no tasks means no evidence (p=1)."""
    delta, low, high, p = paired_bootstrap([1, 0, 0, 1, 0], [1, 1, 0, 0, 1], resamples=500)
    assert low <= delta <= high and 0 <= p <= 1
    assert paired_bootstrap([], []) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_rejects_unpaired_inputs() -> None:
    """Before and after must describe the same tasks."""
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])


# --- CI of the difference ----------------------------------------------------------------


def test_paired_ci_matches_newcombe_reference_values() -> None:
    """The PR's CI is Newcombe's paired interval: Cavo et al. table (59, 6 / 16, 80) gives -0.0621 (-0.1186, -0.0046)."""
    before = [1] * 59 + [0] * 6 + [1] * 16 + [0] * 80
    after = [1] * 59 + [1] * 6 + [0] * 16 + [0] * 80
    delta, low, high = paired_diff_ci(before, after)
    assert delta == pytest.approx(-10 / 161)
    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)


def test_paired_ci_contains_delta_and_shrinks_with_more_tasks() -> None:
    """More tasks with the same flip rate give a narrower interval around the same delta."""
    widths = []
    for k in (1, 4, 16):
        before = ([1] * 5 + [0] * 5) * k
        after = ([1] * 4 + [0] + [1] * 3 + [0] * 2) * k
        delta, low, high = paired_diff_ci(before, after)
        assert delta == pytest.approx(0.2)
        assert -1 <= low <= delta <= high <= 1
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_paired_ci_is_not_degenerate_without_flips() -> None:
    """No flipped task still leaves honest uncertainty (unlike a Wald interval of width 0)."""
    delta, low, high = paired_diff_ci([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert delta == 0 and low < 0 < high


def test_paired_ci_for_graded_scores_uses_the_paired_differences() -> None:
    """Fractional scores (partial credit) get a Wald interval on the per-task differences."""
    delta, low, high = paired_diff_ci([0.2, 0.4, 0.5, 0.1], [0.4, 0.5, 0.7, 0.2])
    assert delta == pytest.approx(0.15)
    assert low < 0.15 < high and low > 0


# --- decide -------------------------------------------------------------------------------


def test_noisy_epoch_passes_the_raw_delta_gate_but_not_mcnemar() -> None:
    """3 lucky flips up and 1 down on 20 tasks: `delta` keeps the epoch, McNemar (p=0.3125) does not."""
    before, after = noisy_epoch()
    raw = decide(before, after, rule="delta")
    assert raw.kept and raw.delta == pytest.approx(0.1) and raw.p_value is None
    gated = decide(before, after, rule="mcnemar", alpha=0.1)
    assert not gated.kept
    assert (gated.up, gated.down, gated.p_value) == (3, 1, 0.3125)
    assert gated.reason == "+3/-1 tasks, McNemar p=0.3125 > alpha 0.1: not significant"


def test_clear_improvement_is_kept_by_every_gate() -> None:
    """Six tasks fixed and none broken is kept by mcnemar (p=1/64), bootstrap and delta."""
    before = outcomes([0] * 6 + [1] * 4)
    after = outcomes([1] * 10)
    for rule in ("mcnemar", "bootstrap", "delta"):
        d = decide(before, after, rule=rule, alpha=0.1)
        assert d.kept, d.reason
        assert d.test == rule and d.delta == pytest.approx(0.6) and (d.up, d.down) == (6, 0)
        assert d.ci_low is not None and d.ci_high is not None and d.ci_low <= 0.6 <= d.ci_high
    assert decide(before, after).p_value == pytest.approx(1 / 64)
    assert "McNemar p=0.01562 <= alpha 0.1: kept" in decide(before, after).reason


def test_min_delta_blocks_small_but_significant_gains() -> None:
    """An improvement below min_delta is rejected with a reason that says so."""
    before = outcomes([0] * 5 + [1] * 95)
    after = outcomes([1] * 100)
    d = decide(before, after, rule="mcnemar", min_delta=0.1)
    assert not d.kept and "min_delta 0.1: too small" in d.reason
    assert decide(before, after, rule="mcnemar", min_delta=0.05).kept


def test_a_regression_is_never_kept() -> None:
    """A worse epoch is rejected by all gates, with 'no improvement' as the reason."""
    before = outcomes([1] * 8)
    after = outcomes([0] * 8)
    for rule in ("mcnemar", "bootstrap", "delta"):
        d = decide(before, after, rule=rule)
        assert not d.kept and d.delta == -1.0 and "no improvement" in d.reason


def test_missing_tasks_count_as_failed_on_that_side() -> None:
    """A task the candidate did not finish is a failure, not silently dropped."""
    before = {"a": True, "b": True, "c": False}
    after = {"a": True, "c": True}
    d = decide(before, after, rule="delta")
    assert (d.up, d.down, d.delta) == (1, 1, 0.0) and not d.kept


def test_no_tasks_is_not_an_improvement() -> None:
    """An empty task set never keeps an epoch."""
    d = decide({}, {})
    assert not d.kept and d.reason.startswith("no tasks")


def test_unknown_gate_is_a_user_error() -> None:
    """A typo in the gate name is reported, not silently treated as another rule."""
    with pytest.raises(ForgegitError, match="unknown gate"):
        decide({"a": True}, {"a": True}, rule="ttest")


def test_bootstrap_gate_is_reproducible_with_seed() -> None:
    """The bootstrap gate gives the same p-value for the same seed."""
    before, after = noisy_epoch()
    a = decide(before, after, rule="bootstrap", seed=3)
    assert a == decide(before, after, rule="bootstrap", seed=3)
    assert a.p_value is not None and a.p_value > 0.1 and not a.kept


outcome_maps = st.dictionaries(st.sampled_from([f"t{i}" for i in range(12)]), st.booleans(), max_size=12)


@settings(max_examples=60, deadline=None)
@given(before=outcome_maps, after=outcome_maps, rule=st.sampled_from(["mcnemar", "bootstrap", "delta"]),
       alpha=st.floats(0.01, 0.5), min_delta=st.floats(0.0, 0.3))
def test_decide_never_keeps_both_directions(
    before: dict[str, bool], after: dict[str, bool], rule: str, alpha: float, min_delta: float
) -> None:
    """Swapping before and after can never make both directions count as improvements; p stays in [0, 1]."""
    forward = decide(before, after, rule=rule, alpha=alpha, min_delta=min_delta)
    backward = decide(after, before, rule=rule, alpha=alpha, min_delta=min_delta)
    assert not (forward.kept and backward.kept)
    assert forward.delta == pytest.approx(-backward.delta)
    assert (forward.up, forward.down) == (backward.down, backward.up)
    for d in (forward, backward):
        assert d.p_value is None or 0.0 <= d.p_value <= 1.0
        if d.ci_low is not None and d.ci_high is not None:
            assert d.ci_low <= d.delta + 1e-12 and d.delta - 1e-12 <= d.ci_high


@settings(max_examples=200, deadline=None)
@given(up=st.integers(0, 60), down=st.integers(0, 60))
def test_mcnemar_p_values_are_probabilities_and_monotone(up: int, down: int) -> None:
    """p is in [0, 1]; one more fixed task never makes the evidence weaker."""
    p = mcnemar_exact(up, down)
    assert 0.0 <= p <= 1.0 and 0.0 <= mcnemar_exact_two_sided(up, down) <= 1.0
    assert mcnemar_exact(up + 1, down) <= p + 1e-12
    assert math.isclose(mcnemar_exact_two_sided(up, down), mcnemar_exact_two_sided(down, up))


# --- compare ------------------------------------------------------------------------------


def make_eval(passed: dict[str, bool], feedback: dict[str, str] | None = None) -> EvalResult:
    results = [
        TaskResult(task_id=t, passed=p, answer="", expected="", feedback=(feedback or {}).get(t, ""),
                   failure=None if p else "wrong_answer")
        for t, p in passed.items()
    ]
    return EvalResult(key="k", revision="r", tree="t", tasks_file="val.jsonl", tasks_hash="h", model="m",
                      passed=sum(passed.values()), total=len(passed), usage=Usage(), results=results)


def test_compare_reports_scores_ci_and_flipped_tasks_with_feedback() -> None:
    """The review shows base/head scores, the delta with its CI, and which tasks flipped and why."""
    base = make_eval({"a": False, "b": False, "c": True, "d": True, "e": False},
                     feedback={"a": "expected 4, got 5", "c": "correct"})
    head = make_eval({"a": True, "b": True, "c": False, "d": True, "e": False},
                     feedback={"b": "correct", "c": "expected 7, got 8"})
    cmp = compare("val", "val.jsonl", base, head, rule="delta", alpha=0.1, min_delta=0.0)
    assert (cmp.base_score, cmp.head_score, cmp.base_total, cmp.head_total) == (0.4, 0.6, 5, 5)
    assert cmp.delta == pytest.approx(0.2) and cmp.passed
    assert cmp.ci_low is not None and cmp.ci_high is not None and cmp.ci_low < 0.2 < cmp.ci_high
    assert cmp.flipped_up == [{"task_id": "a", "feedback": "expected 4, got 5"}, {"task_id": "b", "feedback": "correct"}]
    assert cmp.flipped_down == [{"task_id": "c", "feedback": "expected 7, got 8"}]


def test_compare_on_test_split_never_passes() -> None:
    """The sealed test set gates nothing: even a big gain reports passed=False."""
    base = make_eval({f"t{i}": False for i in range(10)})
    head = make_eval({f"t{i}": True for i in range(10)})
    assert compare("val", "v", base, head, rule="mcnemar", alpha=0.1, min_delta=0).passed
    test = compare("test", "t", base, head, rule="mcnemar", alpha=0.1, min_delta=0)
    assert not test.passed and test.p_value == pytest.approx(1 / 1024)


def test_compare_lists_every_flip_but_limits_feedback() -> None:
    """Flip counts stay honest; only the first feedback_limit flips carry feedback text."""
    ids = [f"t{i:02d}" for i in range(30)]
    base = make_eval({t: False for t in ids})
    head = make_eval({t: True for t in ids}, feedback={t: "x" * 1000 for t in ids})
    cmp = compare("val", "v", base, head, rule="delta", alpha=0.1, min_delta=0, feedback_limit=5)
    assert len(cmp.flipped_up) == 30
    assert [bool(f["feedback"]) for f in cmp.flipped_up] == [True] * 5 + [False] * 25
    assert len(cmp.flipped_up[0]["feedback"]) <= 300
