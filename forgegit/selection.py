"""Which failed tasks the optimizer reads in full: a few, chosen for diversity, and a summary of the rest.

At scale the optimizer learns from a handful of whole conversations (GEPA reflects on minibatches of
about three), not from hundreds of headers. Failures are grouped by failure kind, the shape of the
checker's feedback (numbers and quoted text blanked) and the functions the agent called; the order
picks, greedily, the failure that adds the most not-yet-seen kinds, feedback shapes and functions,
the larger group first, ties broken by a seeded shuffle, so the same evaluation and seed always give
the same prompt.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from .chat import Conversation
from .records import TaskResult

SUMMARY_ITEMS = 6  # feedback shapes and functions listed in the summary of the rest


def feedback_shape(feedback: str) -> str:
    """The checker's feedback with its particulars blanked: `expected 27, got 9` -> `expected N, got N`."""
    lines = str(feedback or "").strip().splitlines()
    text = re.sub(r"(['\"`]).*?\1", "'…'", lines[0] if lines else "")
    text = re.sub(r"[-+]?\d+(?:[.,/]\d+)*", "N", text)
    return re.sub(r"\s+", " ", text)[:80] or "(no feedback)"


def functions_called(messages: Iterable[Any]) -> tuple[str, ...]:
    """The names of the tools an agent called in a conversation, sorted, each once."""
    names: set[str] = set()
    for m in messages:
        for call in (m.get("tool_calls") or []) if isinstance(m, dict) and isinstance(m.get("tool_calls"), list) else []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and fn.get("name"):
                names.add(str(fn["name"])[:60])
    return tuple(sorted(names))


@dataclass(frozen=True)
class Traits:
    """What makes one failure like or unlike another."""

    kind: str
    feedback: str
    functions: tuple[str, ...]


def traits(r: TaskResult, messages: Iterable[Any]) -> Traits:
    return Traits(r.failure or "wrong_answer", feedback_shape(r.feedback), functions_called(messages))


def diverse_order(failed: list[TaskResult], conversations: dict[str, Conversation], seed: int = 0,
                  picks: int = 12) -> list[TaskResult]:
    """failed reordered so its first `picks` cover as many failure kinds, feedback shapes and functions
    as they can (tasks with a recorded conversation first); the rest follow in a seeded order."""
    rng = random.Random(seed)
    pool = list(failed)
    rng.shuffle(pool)
    tr = {r.task_id: traits(r, conversations.get(r.task_id, [])) for r in pool}
    size = Counter(tr[r.task_id] for r in pool)
    rank = {r.task_id: i for i, r in enumerate(pool)}
    seen_kind: set[str] = set()
    seen_feedback: set[str] = set()
    seen_functions: set[str] = set()
    chosen: list[TaskResult] = []
    left = pool
    while left and len(chosen) < picks:
        def gain(r: TaskResult) -> tuple[int, int, int, int]:
            t = tr[r.task_id]
            new = (t.kind not in seen_kind) + (t.feedback not in seen_feedback) + bool(set(t.functions or ("(none)",)) - seen_functions)
            return (int(r.task_id in conversations), new, size[t], -rank[r.task_id])
        best = max(left, key=gain)
        chosen.append(best)
        left = [r for r in left if r is not best]
        t = tr[best.task_id]
        seen_kind.add(t.kind)
        seen_feedback.add(t.feedback)
        seen_functions.update(t.functions or ("(none)",))
    return chosen + left


def summary(failed: list[TaskResult], conversations: dict[str, Conversation]) -> str:
    """Counts of failed tasks by failure kind, feedback shape and functions called, in a few lines."""
    if not failed:
        return ""
    tr = [traits(r, conversations.get(r.task_id, [])) for r in failed]

    def top(counter: Counter[str]) -> str:
        items = counter.most_common(SUMMARY_ITEMS)
        more = len(counter) - len(items)
        return "; ".join(f"{k!s} ×{v}" for k, v in items) + (f"; and {more} more" if more > 0 else "")

    kinds = Counter(t.kind for t in tr)
    shapes = Counter(t.feedback for t in tr)
    functions = Counter(", ".join(t.functions) or "(no function called)" for t in tr)
    return (f"- by failure kind: {top(kinds)}\n- by checker feedback: {top(shapes)}\n"
            f"- by functions called: {top(functions)}")
