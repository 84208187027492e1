"""Paired statistics (pure functions): exact McNemar, paired bootstrap, and a CI for the difference.

The gate built on them is in gate.py. Every epoch is judged on the same tasks before and after, so the tests here are paired:
only the tasks that changed outcome (discordant pairs) carry evidence of improvement.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Mapping, Optional, Sequence

from .records import TaskResult

FEEDBACK_CHARS = 300


def _binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), computed exactly with integers."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    outcomes: int = 2**n  # int ** int is typed Any (a negative exponent gives a float)
    return sum(math.comb(n, i) for i in range(k, n + 1)) / outcomes


def mcnemar_exact(up: int, down: int) -> float:
    """One-sided exact McNemar p-value for improvement: P(X >= up), X ~ Binomial(up + down, 1/2)."""
    _check_counts(up, down)
    n = up + down
    return 1.0 if n == 0 else min(1.0, _binomial_tail(up, n))


def mcnemar_exact_two_sided(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: twice the smaller binomial tail, capped at 1."""
    _check_counts(b, c)
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_tail(max(b, c), n))


def _check_counts(a: int, b: int) -> None:
    """Counts of discordant tasks are never negative."""
    if a < 0 or b < 0:
        raise ValueError(f"discordant counts must be non-negative, got {a} and {b}")


def _differences(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """Per-task differences after - before (the two sequences are paired by position)."""
    if len(before) != len(after):
        raise ValueError(f"paired outcomes need equal lengths, got {len(before)} and {len(after)}")
    return [float(a) - float(b) for b, a in zip(before, after)]


def _check_confidence(confidence: float) -> float:
    """The two-sided tail mass 1 - confidence, after checking confidence lies in (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return 1.0 - confidence


def paired_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    *,
    resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """(mean delta, ci_low, ci_high, one-sided p = share of resamples with delta <= 0); deterministic per seed."""
    tail = _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    diffs = _differences(before, after)
    n = len(diffs)
    if n == 0:
        return 0.0, 0.0, 0.0, 1.0
    delta = sum(diffs) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    p = sum(1 for m in means if m <= 0) / resamples
    low = means[max(0, math.floor(tail / 2 * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail / 2) * resamples) - 1)]
    return delta, min(low, delta), max(high, delta), p


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _newcombe(both: int, up: int, down: int, neither: int, z: float) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval (method 10) for after - before on a paired 2x2 table."""
    n = both + up + down + neither
    p1, p2 = (both + up) / n, (both + down) / n
    l1, u1 = _wilson(both + up, n, z)
    l2, u2 = _wilson(both + down, n, z)
    margins = (both + up) * (down + neither) * (both + down) * (up + neither)
    cross = both * neither - up * down
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = delta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def _wald(diffs: list[float], z: float) -> tuple[float, float]:
    """Normal (Wald) interval on the mean of paired differences."""
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return mean - half, mean + half


def paired_diff_ci(
    before: Sequence[float], after: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """(delta, ci_low, ci_high) for paired outcomes.

    0/1 outcomes use Newcombe's hybrid score interval for paired proportions (method 10,
    Wilson intervals combined through the phi correlation, as in Altman's "Statistics with
    Confidence"); it stays sensible with few tasks and no discordant pairs. Graded (non-0/1)
    outcomes fall back to a Wald interval on the paired differences.
    """
    tail = _check_confidence(confidence)
    diffs = _differences(before, after)
    n = len(diffs)
    if n == 0:
        return 0.0, 0.0, 0.0
    delta = sum(diffs) / n
    z = NormalDist().inv_cdf(1 - tail / 2)
    if all(float(x) in (0.0, 1.0) for x in (*before, *after)):
        table = _table(before, after)
        low, high = _newcombe(*table, z=z)
    else:
        low, high = _wald(diffs, z)
    return delta, min(low, delta), max(high, delta)


def _table(before: Sequence[float], after: Sequence[float]) -> tuple[int, int, int, int]:
    """Paired 2x2 counts of 0/1 outcomes: (both pass, fail->pass, pass->fail, both fail)."""
    pairs = [(bool(b), bool(a)) for b, a in zip(before, after)]
    return (
        pairs.count((True, True)),
        pairs.count((False, True)),
        pairs.count((True, False)),
        pairs.count((False, False)),
    )


@dataclass
class Paired:
    """Outcomes aligned on task ids (missing on a side = failed there)."""

    task_ids: list[str]
    before: list[float]
    after: list[float]

    @property
    def up(self) -> int:
        return sum(1 for b, a in zip(self.before, self.after) if a > b)

    @property
    def down(self) -> int:
        return sum(1 for b, a in zip(self.before, self.after) if a < b)

    @property
    def delta(self) -> float:
        n = len(self.task_ids)
        return (sum(self.after) - sum(self.before)) / n if n else 0.0


def pair(before: Mapping[str, bool | float], after: Mapping[str, bool | float]) -> Paired:
    """Align two outcome maps on the union of their task ids; a task missing on one side counts as failed."""
    ids = sorted(set(before) | set(after))
    return Paired(ids, [float(before.get(t, 0.0)) for t in ids], [float(after.get(t, 0.0)) for t in ids])


def flipped(
    ids: list[str], primary: Mapping[str, TaskResult], fallback: Mapping[str, TaskResult], limit: int
) -> list[dict[str, str]]:
    """[{"task_id", "feedback"}] for flipped tasks, feedback only on the first `limit` ones."""
    flips = []
    for i, task_id in enumerate(ids):
        feedback = ""
        if i < limit:
            feedback = feedback_text(primary.get(task_id)) or feedback_text(fallback.get(task_id))
        flips.append({"task_id": task_id, "feedback": feedback})
    return flips


def feedback_text(result: Optional[TaskResult]) -> str:
    """A task result's feedback on one line-limited string ('' when absent)."""
    if result is None or not result.feedback:
        return ""
    text = result.feedback.strip()
    return text if len(text) <= FEEDBACK_CHARS else text[: FEEDBACK_CHARS - 1] + "…"
