"""The commits training writes: an epoch's message (subject, the optimizer's rationale, forgegit's
trailers last) and a revert's; the trailer names are defined here only."""
from __future__ import annotations

import re

from .function_files import Action
from .tokens import trim_to_tokens

TRAILER_EMAIL = "forgegit@users.noreply.github.com"
EPOCH_TRAILER = "Forgegit-Epoch"
ACTIONS_TRAILER = "Forgegit-Actions"
RUN_TRAILER = "Forgegit-Run"
REVERT_TRAILER = "Forgegit-Reverts-Epoch"


def _trailer_value(text: str) -> str:
    return re.sub(r"[\s<>]+", " ", text).strip() or "unknown"


# A line git could read as a trailer (`Key: value`, `Key #value`), or as the `---` that ends a message.
_TRAILER_LIKE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9-]*[ \t]*[:#]|---|\(cherry picked from)", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u0085]")


def defuse_trailers(text: str) -> str:
    """The optimizer's rationale as a commit body: lines that look like trailers (`Forgegit-Run: x`,
    `Co-authored-by: ...`) or like the `---` that ends a message are indented, so only forgegit's own
    trailer block, which always comes last, is read as trailers; control characters are dropped."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text.replace("\t", "    "))
    lines = [f"  {line}" if _TRAILER_LIKE.match(line) else line for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in lines)).strip("\n")


def commit_message(epoch: int, actions: list[Action], rationale: str, model: str, run_id: str = "") -> str:
    """The epoch commit's message: subject, the optimizer's rationale, and forgegit + AI-authorship trailers.

    The trailers are the last paragraph and the rationale cannot add, hide or drop one (see defuse_trailers)."""
    subject = f"forgegit: epoch {epoch}: " + (", ".join(f"{a.kind} {a.name}" for a in actions) or "no changes")
    body = defuse_trailers(trim_to_tokens(defuse_trailers(rationale), 1500))
    trailers = [
        f"{EPOCH_TRAILER}: {epoch}",
        f"{ACTIONS_TRAILER}: {','.join(f'{a.kind}:{a.name}' for a in actions) or 'none'}",
        *([f"{RUN_TRAILER}: {_trailer_value(run_id)}"] if run_id else []),
        f"Co-authored-by: {_trailer_value(model)} <{TRAILER_EMAIL}>",
    ]
    return "\n\n".join(p for p in (subject, body, "\n".join(trailers)) if p.strip()) + "\n"


def revert_message(epoch: int, reason: str, commit: str, run_id: str) -> str:
    """The message of the commit that reverts epoch's commit: why, which commit, and the trailers."""
    return (f"forgegit: revert epoch {epoch} ({reason})\n\n"
            f"This reverts commit {commit}.\n\n{REVERT_TRAILER}: {epoch}\n{RUN_TRAILER}: {run_id}\n")
