"""Which failed tasks the optimizer reads in full: diverse, reproducible, summarised."""
from __future__ import annotations

from typing import Any

from forgegit.records import TaskResult
from forgegit.selection import diverse_order, feedback_shape, functions_called, summary


def conv(fn: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "function": {"name": fn, "arguments": "{}"}}]}]


def failures() -> tuple[list[TaskResult], dict[str, list[dict[str, Any]]]]:
    results, convs = [], {}
    for i in range(300):  # one dominant failure mode and three rare ones
        kind, fb, fn = ("wrong_answer", f"expected {i}, got {i + 1}", "digit_sum")
        if i % 100 == 7:
            kind, fb, fn = "turn_limit", "turn_limit", "python"
        if i % 100 == 8:
            kind, fb, fn = "agent_error", "ValueError: bad", "add"
        if i == 9:
            fb = "answer not in \\boxed{}"
        results.append(TaskResult(f"t{i}", False, "", "", fb, kind))
        convs[f"t{i}"] = conv(fn)
    return results, convs


def test_the_first_few_cover_every_failure_kind_feedback_and_function() -> None:
    """Three full conversations show three different failure modes, not three copies of the commonest."""
    results, convs = failures()
    first = diverse_order(results, convs, seed=0)[:4]
    assert {r.failure for r in first} == {"wrong_answer", "turn_limit", "agent_error"}
    assert {feedback_shape(r.feedback) for r in first} >= {"expected N, got N", "answer not in \\boxed{}"}
    assert {functions_called(convs[r.task_id]) for r in first} >= {("digit_sum",), ("python",), ("add",)}


def test_the_choice_is_reproducible_with_its_seed() -> None:
    results, convs = failures()
    a = [r.task_id for r in diverse_order(results, convs, seed=1)]
    assert a == [r.task_id for r in diverse_order(results, convs, seed=1)]
    assert sorted(a) == sorted(r.task_id for r in results)  # every task still there, once
    assert a[:12] != [r.task_id for r in diverse_order(results, convs, seed=2)][:12]


def test_tasks_with_a_recorded_conversation_come_first() -> None:
    results, convs = failures()
    del convs["t7"]
    assert "t7" not in [r.task_id for r in diverse_order(results, convs, seed=0)[:3]]


def test_the_summary_counts_the_rest_by_kind_feedback_and_function() -> None:
    results, convs = failures()
    text = summary(results, convs)
    assert "wrong_answer ×294" in text and "turn_limit ×3" in text
    assert "expected N, got N ×293" in text and "digit_sum ×294" in text
