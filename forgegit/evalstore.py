"""Results recorded in git: JSON notes on commits under `refs/notes/forgegit`.

A commit's note is one JSON object: {"evals": {key: EvalResult}, "epoch": EpochRecord, "run": ..., "final": ...}.
An evaluation's key hashes what determines its result (the functions/ tree, the task file, the
model and the agent settings), so the same key anywhere in the notes means no model call is needed.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from pathlib import Path
from typing import Any, Optional

from . import git
from .records import EvalResult

NOTES_REF = "refs/notes/forgegit"
FORMAT = 1

# Settings that change an evaluation's outcome (and so are part of its key).
KEY_SETTINGS = (
    "model", "agent", "system_prompt", "max_turns", "temperature", "python_tool",
    "checker", "tool_timeout", "memory_mb", "max_output",
)

_lock = threading.Lock()


def eval_key(tree: str, tasks_hash: str, settings: Any) -> str:
    """The key of an evaluation: sha256 over the functions tree, the task set and the result-relevant settings."""
    data = {"format": FORMAT, "tree": tree, "tasks": tasks_hash}
    data.update({k: getattr(settings, k) for k in KEY_SETTINGS})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def read_note(repo: Path, commit: str) -> dict[str, Any]:
    """The commit's note as a dict ({} when there is none or it is not ours)."""
    proc = git.run(["notes", "--ref", NOTES_REF, "show", commit], repo, check=False)
    if proc.returncode != 0:
        return {}
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def update_note(repo: Path, commit: str, **parts: Any) -> dict[str, Any]:
    """Merge parts into the commit's note (dicts merge one level deep) and write it back."""
    with _lock:
        note = read_note(repo, commit)
        for k, v in parts.items():
            if isinstance(v, dict) and isinstance(note.get(k), dict):
                note[k] = {**note[k], **v}
            else:
                note[k] = v
        git.run(["notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", commit], repo,
                input=json.dumps(note, sort_keys=True, indent=1))
        return note


def all_notes(repo: Path) -> dict[str, dict[str, Any]]:
    """Every note under the ref as {annotated object: note}, read in one `git cat-file --batch`."""
    listing = git.run(["notes", "--ref", NOTES_REF, "list"], repo, check=False).stdout.split()
    if not listing:
        return {}
    pairs = list(zip(listing[0::2], listing[1::2]))
    proc = subprocess.run(
        git.command(["cat-file", "--batch"]), cwd=repo, input=("\n".join(b for b, _ in pairs) + "\n").encode(),
        capture_output=True, env=git.clean_env(),
    )
    out, pos, notes = proc.stdout, 0, {}
    for blob, obj in pairs:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        body = out[header_end + 1: header_end + 1 + size]
        pos = header_end + 1 + size + 1
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if isinstance(data, dict):
            notes[obj] = data
    return notes


def find(repo: Path, key: str, commit: Optional[str] = None) -> Optional[EvalResult]:
    """A recorded result for key: the commit's own note first, then any note (a known tree anywhere)."""
    if commit:
        hit = read_note(repo, commit).get("evals", {}).get(key)
        if hit:
            return EvalResult.from_json(hit)
    for note in all_notes(repo).values():
        hit = note.get("evals", {}).get(key)
        if hit:
            return EvalResult.from_json(hit)
    return None


def record(repo: Path, commit: str, result: EvalResult) -> None:
    """Record an evaluation in the commit's note."""
    update_note(repo, commit, evals={result.key: result.to_json()})
