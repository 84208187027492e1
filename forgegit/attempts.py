"""Attempt memory: what happened to every epoch that was not kept, for the optimizer's later prompts.

An attempt is one epoch's record seen from the optimizer: its label (honest: "no edit proposed" is
not "reverted", and a gain that was not significant is not "did not improve"), its scores before and
after, the gate's reason, the tasks it fixed and broke, the actions rejected with their reasons, and
its diff. `render` fits them to a token budget (the newest in full first, older ones shorter);
`files_key` names a set of function files by content, so a proposal that recreates one already tried
and reverted is refused before it is evaluated (`tried_reason`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

from .records import EpochRecord
from .tokens import count_tokens, trim_to_tokens

TASK_IDS_SHOWN = 10  # fixed/broken task ids listed per attempt
DIFF_TOKENS = 1500  # the newest attempt's diff, at most
MIN_DIFF_TOKENS = 80  # an attempt whose share is smaller shows no diff
REASON_TOKENS = 120  # one rejected action's reason


@dataclass
class Attempt:
    """One epoch as the optimizer's memory keeps it."""

    epoch: int
    committed: bool  # whether any edit was applied (else every action was rejected, or none was proposed)
    kept: bool
    score_before: float
    score_after: Optional[float]
    gate_reason: str = ""
    p_value: Optional[float] = None
    fixed: list[str] = field(default_factory=list)  # tasks that went fail -> pass
    broke: list[str] = field(default_factory=list)  # tasks that went pass -> fail
    applied: list[str] = field(default_factory=list)  # "revise digit_sum"
    rejected: list[tuple[str, str]] = field(default_factory=list)  # ("add ../x", reason)
    diff: str = ""

    @property
    def label(self) -> str:
        """What happened, in words that do not overstate it."""
        if not self.committed:
            return "every proposed action was rejected: nothing applied" if self.rejected else "no edit proposed"
        if self.kept:
            return "kept"
        after = self.score_after if self.score_after is not None else self.score_before
        if after > self.score_before:
            p = f" (p = {self.p_value:.3f})" if self.p_value is not None else ""
            return f"reverted: the gain was not significant{p}"
        if after < self.score_before:
            return "reverted: worse"
        return "reverted: no change in score"

    @classmethod
    def from_epoch(cls, epoch: EpochRecord, diff: str = "") -> "Attempt":
        """An attempt from an EpochRecord (and the diff of its commit, when it has one)."""
        e, gate = epoch, epoch.gate
        return cls(
            epoch=e.epoch, committed=bool(e.commit), kept=bool(e.kept), score_before=e.score_before,
            score_after=e.score_after, gate_reason=gate.reason if gate else "",
            p_value=gate.p_value if gate else None, fixed=list(e.flipped_up), broke=list(e.flipped_down),
            applied=[f"{a.kind} {a.name}" for a in e.actions if a.accepted],
            rejected=[(f"{a.kind} {a.name}", a.reason) for a in e.actions if not a.accepted], diff=diff,
        )


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:TASK_IDS_SHOWN])
    return shown + (f" and {len(ids) - TASK_IDS_SHOWN} more" if len(ids) > TASK_IDS_SHOWN else "")


def outcome(a: Attempt) -> str:
    """One line: the label, scores, gate reason and flips (what a refusal repeats)."""
    after = f"{a.score_after:.3f}" if a.score_after is not None else "not evaluated"
    parts = [f"epoch {a.epoch}: {a.label}", f"score {a.score_before:.3f} -> {after}"]
    if a.gate_reason:
        parts.append(f"gate: {a.gate_reason}")
    if a.committed:
        parts.append(f"fixed {len(a.fixed)} task(s)" + (f" ({_ids(a.fixed)})" if a.fixed else ""))
        parts.append(f"broke {len(a.broke)} task(s)" + (f" ({_ids(a.broke)})" if a.broke else ""))
    return "; ".join(parts)


def _block(a: Attempt, diff_tokens: int) -> str:
    lines = [f"### {outcome(a)}"]
    if a.applied:
        lines.append("applied: " + ", ".join(a.applied))
    for what, reason in a.rejected:
        lines.append(f"rejected {what}: {trim_to_tokens(reason, REASON_TOKENS)}")
    if a.kept:
        return "\n".join(lines)  # its edits are the current functions: only the rejected ones are news
    if a.diff and diff_tokens >= MIN_DIFF_TOKENS:
        diff = trim_to_tokens(a.diff.rstrip("\n"), diff_tokens)
        fence = "`" * max(3, max((len(r) for r in diff.split("\n") if set(r) == {"`"}), default=0) + 1)
        lines.append(f"{fence}diff\n{diff}\n{fence}")
    elif a.diff:
        lines.append("(diff left out for space)")
    return "\n".join(lines)


def render(attempts: list[Attempt], budget: int) -> str:
    """The attempts that were not kept (and kept epochs' rejected actions), newest first, within budget
    tokens: each with its diff while room allows (the newest get the larger share), then one line
    each, then a count of the rest."""
    failed = [a for a in reversed(attempts) if a.rejected or (a.committed and not a.kept)]  # "no edit" is no attempt
    if not failed:
        return "(none yet)"
    blocks: list[str] = []
    used = 0
    for i, a in enumerate(failed):
        left = budget - used
        share = left // max(1, min(len(failed) - i, 4))  # the newest four share the room, newest first
        block = _block(a, min(DIFF_TOKENS, share - count_tokens(_block(a, 0)) - 8))
        cost = count_tokens(block) + 2
        if cost > left:
            block = f"* {outcome(a)}"  # not "- epoch N:", the score history's line
            cost = count_tokens(block) + 1
            if cost > left:
                blocks.append(f"({len(failed) - i} older attempts left out for space)")
                break
        blocks.append(block)
        used += cost
    return "\n\n".join(blocks)


def files_key(files: dict[str, bytes]) -> str:
    """A name for a set of function files by content (the same files give the same key)."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(f"{len(name)}:{name}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def tried_reason(attempt: Attempt) -> str:
    """Why a proposal that recreates attempt's functions is refused: what happened to them last time."""
    return (f"these edits recreate exactly the functions of epoch {attempt.epoch}, which was tried and not kept "
            f"({outcome(attempt)}); propose something different")
