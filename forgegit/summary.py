"""A one-line, human-readable summary of each commit's forgegit note, in its own notes ref.

`refs/notes/forgegit` holds data (JSON, kilobytes a commit) for programs; `refs/notes/forgegit-summary`
holds one line a commit for people, written beside the data whenever the data changes:

    git log --notes=forgegit-summary forgegit/train/<run-id>

    forgegit: epoch 2 reverted: train 75.0% -> 50.0% (mcnemar p=0.500): ~digit_sum; 2,345 tokens

The line is derived from the data note only (so it can always be rewritten from it), and every text
in it that comes from a note is defused (`safe_text`): notes are untrusted input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from . import git
from .workflow_commands import safe_text

SUMMARY_REF = "refs/notes/forgegit-summary"
LIMIT = 400  # characters of a summary line

_SIGNS = {"add": "+", "revise": "~", "remove": "-"}


def _pct(value: object) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _tokens(usage: object) -> str:
    if not isinstance(usage, dict):
        return ""
    total = sum(v for k in ("prompt_tokens", "completion_tokens")
                if isinstance(v := usage.get(k), int) and not isinstance(v, bool))
    return f"{total:,} tokens" if total else ""


def _epoch(commit: str, e: dict[str, Any]) -> str:
    n = e.get("epoch", "?")
    if e.get("revert") == commit:
        gate = e.get("gate") if isinstance(e.get("gate"), dict) else {}
        why = f" ({safe_text(gate.get('reason'), 120)})" if gate and gate.get("reason") else ""
        return f"revert of epoch {n}{why}: back to train {_pct(e.get('score_before'))}"
    actions = [a for a in e.get("actions") or [] if isinstance(a, dict)]
    shown = " ".join(f"{_SIGNS.get(str(a.get('kind')), '?')}{safe_text(a.get('name'), 60)}"
                     + ("" if a.get("accepted") else "(rejected)") for a in actions) or "no edit"
    if e.get("score_after") is None:
        return f"epoch {n}: no valid edit ({shown})"
    verdict = "kept" if e.get("kept") else "reverted"
    gate = e.get("gate") if isinstance(e.get("gate"), dict) else {}
    p = gate.get("p_value") if gate else None
    test = f" ({safe_text(gate.get('test'), 20)} p={p:.3f})" if isinstance(p, (int, float)) and gate else ""
    parts = [f"epoch {n} {verdict}: train {_pct(e.get('score_before'))} -> {_pct(e.get('score_after'))}{test}: {shown}"]
    if isinstance(e.get("val_score"), (int, float)):
        parts.append(f"val {_pct(e.get('val_score'))}")
    if _tokens(e.get("usage")):
        parts.append(_tokens(e.get("usage")))
    return "; ".join(parts)


def _final(f: dict[str, Any]) -> str:
    run = safe_text(f.get("run"), 60)
    val = f.get("val") if isinstance(f.get("val"), dict) else None
    if not val:
        return f"run {run} final"
    verdict = "passed" if val.get("passed") else "did not pass"
    text = (f"run {run} final gate {verdict}: {safe_text(val.get('tasks_file'), 80)} "
            f"{_pct(val.get('base_score'))} -> {_pct(val.get('head_score'))}")
    test = f.get("test") if isinstance(f.get("test"), dict) else None
    if test:
        text += f"; sealed test {_pct(test.get('base_score'))} -> {_pct(test.get('head_score'))}"
    return text


def _runs(runs: dict[str, Any]) -> str:
    items = []
    for run_id, r in runs.items():
        if not isinstance(r, dict):
            continue
        epochs = [e for e in r.get("epochs") or [] if isinstance(e, dict)]
        kept = sum(1 for e in epochs if e.get("kept"))
        items.append(f"run {safe_text(run_id, 60)} starts here: baseline train {_pct(r.get('baseline_score'))}, "
                     f"{len(epochs)} epoch{'s' if len(epochs) != 1 else ''} ({kept} kept), {safe_text(r.get('status'), 20)}")
    return "; ".join(items)


def _evals(evals: dict[str, Any]) -> str:
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in evals.values():
        if isinstance(e, dict):
            key = (str(e.get("tasks_file")), str(e.get("model")))
            if key not in newest or str(e.get("created", "")) > str(newest[key].get("created", "")):
                newest[key] = e
    return "; ".join(f"{safe_text(f, 80)} {e.get('passed')}/{e.get('total')} ({_pct(_score(e))}) with {safe_text(m, 60)}"
                     for (f, m), e in sorted(newest.items()))


def _score(e: dict[str, Any]) -> Optional[float]:
    passed, total = e.get("passed"), e.get("total")
    if isinstance(passed, int) and isinstance(total, int) and total > 0:
        return passed / total
    return None


def summary_line(commit: str, note: dict[str, Any]) -> str:
    """The note of commit as one line for `git log --notes=forgegit-summary` ("" for an empty note)."""
    parts = []
    if isinstance(note.get("epoch"), dict):
        parts.append(_epoch(commit, note["epoch"]))
    if isinstance(note.get("final"), dict):
        parts.append(_final(note["final"]))
    if isinstance(note.get("runs"), dict) and note["runs"]:
        parts.append(_runs(note["runs"]))
    if isinstance(note.get("evals"), dict) and note["evals"] and not parts:
        parts.append("evaluated: " + _evals(note["evals"]))
    parts = [p for p in parts if p]
    return safe_text("forgegit: " + " | ".join(parts), LIMIT) if parts else ""


def write(repo: Path, commit: str, note: dict[str, Any]) -> None:
    """Write commit's summary line beside its data note (callers hold the notes lock)."""
    line = summary_line(commit, note)
    if line:
        git.run(["notes", f"--ref={SUMMARY_REF}", "add", "-f", "-m", line, commit], repo, check=False)


def read(repo: Path, commit: str) -> str:
    """The summary line of commit ("" when there is none)."""
    proc = git.run(["notes", f"--ref={SUMMARY_REF}", "show", commit], repo, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""
