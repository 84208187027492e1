"""Attempt memory: what the optimizer is told about epochs that were not kept, and honest labels."""
from __future__ import annotations

from forgegit.attempts import Attempt, files_key, outcome, render, tried_reason
from forgegit.tokens import count_tokens


def attempt(epoch: int, before: float, after: float | None, *, committed: bool = True, kept: bool = False,
            **kw: object) -> Attempt:
    return Attempt(epoch, committed, kept, before, after, **kw)  # type: ignore[arg-type]


def test_labels_say_what_happened_without_overstating_it() -> None:
    """"no edit proposed" is not "reverted", and a gain that was not significant is not "did not improve"."""
    assert attempt(1, 0.5, None, committed=False).label == "no edit proposed"
    assert attempt(1, 0.5, None, committed=False, rejected=[("add x", "bad name")]).label.startswith("every proposed action was rejected")
    assert attempt(1, 0.5, 0.75, p_value=0.125).label == "reverted: the gain was not significant (p = 0.125)"
    assert attempt(1, 0.5, 0.25).label == "reverted: worse"
    assert attempt(1, 0.5, 0.5).label == "reverted: no change in score"


def test_every_attempt_carries_diff_scores_reason_flips_and_rejections() -> None:
    """The optimizer sees what each reverted attempt changed and what it did to which tasks."""
    a = attempt(2, 0.5, 0.25, gate_reason="-0/+3 tasks, p = 0.875", fixed=["t1"], broke=["t2", "t3", "t4"],
                applied=["revise digit_sum"], rejected=[("add ../pwn", "not an identifier")],
                diff="-    return sum(ds)\n+    return sum(ds[1:])")
    text = render([a], 2000)
    for part in ("epoch 2: reverted: worse", "score 0.500 -> 0.250", "gate: -0/+3 tasks", "fixed 1 task(s) (t1)",
                 "broke 3 task(s) (t2, t3, t4)", "applied: revise digit_sum", "rejected add ../pwn: not an identifier",
                 "+    return sum(ds[1:])"):
        assert part in text


def test_many_attempts_fit_the_budget_newest_in_full() -> None:
    """Dozens of reverted attempts stay within their token budget; the newest keeps its diff."""
    attempts = [attempt(i, 0.5, 0.25, diff=f"+ change number {i}\n" * 400) for i in range(1, 41)]
    text = render(attempts, 1500)
    assert count_tokens(text) <= 1500
    assert text.startswith("### epoch 40:") and "+ change number 40" in text
    assert "older attempts left out for space" in text or "* epoch 1:" in text


def test_an_epoch_without_any_edit_is_not_listed_as_an_attempt() -> None:
    assert render([attempt(1, 0.5, None, committed=False)], 500) == "(none yet)"


def test_kept_epochs_are_not_attempts_to_avoid_but_their_rejected_actions_are_shown() -> None:
    """A kept epoch is no attempt to avoid; the action it had rejected, and why, still reaches the prompt."""
    assert render([attempt(1, 0.2, 0.9, kept=True, diff="+x")], 500) == "(none yet)"
    text = render([attempt(1, 0.2, 0.9, kept=True, diff="+x", rejected=[("add ../pwn", "not an identifier")])], 500)
    assert "epoch 1: kept" in text and "rejected add ../pwn: not an identifier" in text and "+x" not in text


def test_a_tree_tried_before_has_the_same_key_and_its_refusal_says_what_happened() -> None:
    files = {"a.py": b"x", "b.py": b"y"}
    assert files_key(dict(reversed(list(files.items())))) == files_key(files)
    assert files_key({"a.py": b"xy"}) != files_key({"a.py": b"x", "y": b""})
    a = attempt(3, 0.5, 0.25, gate_reason="worse", broke=["t9"])
    assert outcome(a) in tried_reason(a) and "epoch 3" in tried_reason(a)
