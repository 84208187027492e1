"""The gate: whether an epoch (or a subset of its actions) is kept, over stats.py's paired tests.

Rules: `mcnemar` and `bootstrap` (paired tests at level alpha), `delta` (gain >= min_delta) and
`no-worse` (the AgentOptimizer paper's rule: roll back only when worse). Every rule counts patience
on epochs without a strict gain (`is_gain`), so `no-worse` cannot keep a flat run going forever.

Sequential evaluation (`looks`, `spending`): when an epoch's gain is positive but not yet
significant on its batch, more training tasks are evaluated before deciding. Each look k is tested
at its own level alpha_k, and the levels of all the looks an epoch may take sum to alpha, so by the
union bound the chance that an epoch which does not help is kept is at most alpha (per epoch).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from .errors import ForgegitError
from .records import Comparison, EvalResult, GateDecision
from .stats import flipped, mcnemar_exact, pair, paired_bootstrap, paired_diff_ci

RULES = ("mcnemar", "bootstrap", "delta", "no-worse")
TESTS = ("mcnemar", "bootstrap")  # the rules with a p-value (where alpha and sequential looks apply)
CONFIDENCE = 0.95  # level of the confidence intervals reported with every gate decision


def check_rule(rule: str, alpha: float) -> None:
    """A known rule and an alpha in (0, 1), or one line saying what is wrong."""
    if rule not in RULES:
        raise ForgegitError(f"unknown gate {rule!r}: use mcnemar, bootstrap, delta or no-worse")
    if not 0 < alpha < 1:
        raise ForgegitError(f"alpha must be between 0 and 1, got {alpha}")


def decide(
    before: Mapping[str, bool | float],
    after: Mapping[str, bool | float],
    *,
    rule: str = "mcnemar",
    alpha: float = 0.1,
    min_delta: float = 0.0,
    seed: int = 0,
) -> GateDecision:
    """Whether `after` beats (or, for no-worse, matches) `before` on paired per-task outcomes, by the given rule."""
    check_rule(rule, alpha)
    paired = pair(before, after)
    up, down, delta = paired.up, paired.down, paired.delta
    counts = f"+{up}/-{down} tasks"
    n = len(paired.task_ids)
    if not n:
        p_none = 1.0 if rule in TESTS else None
        return GateDecision(False, rule, 0.0, p_none, reason="no tasks to compare: not kept", alpha=alpha)
    if rule == "bootstrap":
        _, low, high, p = paired_bootstrap(paired.before, paired.after, seed=seed, confidence=CONFIDENCE)
        p_value: Optional[float] = p
    else:
        _, low, high = paired_diff_ci(paired.before, paired.after, confidence=CONFIDENCE)
        p_value = mcnemar_exact(up, down) if rule == "mcnemar" else None
    kept, verdict = _verdict(rule, delta, p_value, alpha, min_delta)
    return GateDecision(kept, rule, delta, p_value, up, down, low, high, f"{counts}, {verdict}", tasks=n, alpha=alpha)


def _verdict(rule: str, delta: float, p: Optional[float], alpha: float, min_delta: float) -> tuple[bool, str]:
    """(kept, readable reason) from the delta, the p-value and the thresholds."""
    if rule == "no-worse":
        if delta < 0:
            return False, f"delta {delta:+.3f}: worse"
        return True, f"delta {delta:+.3f}: no worse, kept" + ("" if delta > 0 else " (no gain: counts toward patience)")
    if delta <= 0:
        return False, f"delta {delta:+.3f}: no improvement"
    if delta < min_delta:
        return False, f"delta {delta:+.3f} < min_delta {min_delta:g}: too small"
    if rule == "delta" or p is None:
        return True, f"delta {delta:+.3f} >= min_delta {min_delta:g}: kept"
    name = "McNemar" if rule == "mcnemar" else "bootstrap"
    if p > alpha:
        return False, f"{name} p={p:.4g} > alpha {alpha:.4g}: not significant"
    return True, f"{name} p={p:.4g} <= alpha {alpha:.4g}: kept"


def is_gain(decision: Optional[GateDecision]) -> bool:
    """A kept decision with a strict gain: what resets patience (a no-worse tie does not)."""
    return bool(decision and decision.kept and decision.delta > 0)


def undecided(decision: GateDecision) -> bool:
    """A positive gain that a test did not (yet) find significant: more tasks could decide it."""
    return (decision.test in TESTS and not decision.kept and decision.delta > 0
            and decision.p_value is not None and decision.reason.endswith("not significant"))


# ---------------------------------------------------------------------------- sequential looks


def looks(batch: int, total: int) -> list[int]:
    """Cumulative task counts of the looks an epoch may take: the batch, then doubling, up to the full set."""
    if batch <= 0 or batch >= total:
        return [total]
    sizes = [batch]
    while sizes[-1] < total:
        sizes.append(min(total, sizes[-1] * 2))
    return sizes


def spending(alpha: float, count: int) -> list[float]:
    """The level of each of `count` looks: alpha/2, alpha/4, ... and the last look gets the remainder,
    so they sum to alpha (one look: alpha itself)."""
    if count < 1:
        raise ValueError(f"at least one look, got {count}")
    levels = [alpha / 2 ** (k + 1) for k in range(count - 1)]
    return levels + [alpha - sum(levels)]


# ---------------------------------------------------------------------------- power on small sets


def tasks_needed(rule: str, alpha: float) -> int:
    """The fewest tasks on which the rule can keep anything (every one going fail -> pass); 1 without a test."""
    if rule != "mcnemar":
        return 1  # bootstrap: all-up gives p=0; delta and no-worse have no test
    return max(1, math.ceil(math.log2(1 / alpha) - 1e-12))


def power_warning(n_tasks: int, rule: str, alpha: float, what: str, *, batch_size: int = 0,
                  sequential: bool = False) -> Optional[str]:
    """One line when the gate can never keep an epoch judged on `what` (n_tasks tasks, looked at
    `batch_size` at a time, more when sequential), saying what to do; else None."""
    first = batch_size_for(batch_size, n_tasks)
    sizes = looks(first, n_tasks) if sequential and rule in TESTS else [first]
    levels = spending(alpha, len(sizes))
    if any(size >= tasks_needed(rule, level) for size, level in zip(sizes, levels)):
        return None
    best_p = 0.5 ** sizes[-1]
    need = tasks_needed(rule, levels[-1] if len(sizes) > 1 else alpha)
    looked = f"{first} at a time, " if first < n_tasks else ""
    grow = "raise batch_size or turn sequential on" if first < n_tasks and n_tasks >= need else "add tasks"
    return (f"{what} has {n_tasks} task(s) ({looked}gate {rule}, alpha {alpha:g}): no epoch can ever be kept "
            f"(even +{sizes[-1]}/-0 gives p={best_p:.4g}); {grow} (at least {need}), raise alpha above "
            f"{best_p:.4g}, or use gate = \"no-worse\" (the paper's rule: roll back only when worse)")


def batch_size_for(batch_size: int, n_tasks: int) -> int:
    """How many tasks one epoch's gate first looks at."""
    return n_tasks if batch_size <= 0 else min(batch_size, n_tasks)


# ---------------------------------------------------------------------------- the final gate


def compare(
    split: str,
    tasks_file: str,
    before: EvalResult,
    after: EvalResult,
    *,
    rule: str,
    alpha: float,
    min_delta: float,
    feedback_limit: int = 20,
    seed: int = 0,
) -> Comparison:
    """Base vs head on one task set, for the review: scores, delta with CI, p, verdict and flipped tasks.

    The final gate claims an improvement, so under `no-worse` it needs a strict gain (the `delta` rule).
    Every flipped task is listed (so counts stay honest); only the first `feedback_limit` of
    each list carry feedback, taken from the head's result (the base's when the head has none).
    """
    final_rule = "delta" if rule == "no-worse" else rule
    decision = decide(before.outcomes(), after.outcomes(), rule=final_rule, alpha=alpha, min_delta=min_delta, seed=seed)
    paired = pair(before.outcomes(), after.outcomes())
    up = [t for t, b, a in zip(paired.task_ids, paired.before, paired.after) if a > b]
    down = [t for t, b, a in zip(paired.task_ids, paired.before, paired.after) if a < b]
    by_before = {r.task_id: r for r in before.results}
    by_after = {r.task_id: r for r in after.results}
    return Comparison(
        split=split,
        tasks_file=tasks_file,
        base_score=before.score,
        head_score=after.score,
        delta=decision.delta,
        ci_low=decision.ci_low,
        ci_high=decision.ci_high,
        p_value=decision.p_value,
        passed=decision.kept and split != "test",
        flipped_up=flipped(up, by_after, by_before, feedback_limit),
        flipped_down=flipped(down, by_after, by_before, feedback_limit),
        base_total=before.total,
        head_total=after.total,
    )


def best(trials: Sequence[tuple[int, GateDecision]]) -> Optional[int]:
    """The index of the kept trial with the largest gain (ties: the first), or None when none is kept."""
    kept = [(d.delta, -i, i) for i, d in trials if d.kept]
    return max(kept)[2] if kept else None
