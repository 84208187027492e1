"""Results recorded in git: JSON notes on commits under `refs/notes/forgegit`.

A commit's note is one JSON object: {"evals": {key: EvalResult}, "epoch": EpochRecord, "runs": {run id:
RunRecord}, "final": ...}. An evaluation's key hashes what determines its result (the functions/ tree,
the task file, the model and the agent settings), so the same key anywhere in the notes means no model
call is needed.

Notes come from anyone who can push them, so they are read as untrusted input: a note that is not
JSON, is nested too deeply or has the wrong shape is reported once (one line naming the commit) and
treated as absent, and a recorded evaluation is reused only when its own key and the tree, task hash
and settings it carries recompute to the key looked up.

Writers never lose each other's results: an update takes a file lock (`.git/forgegit/notes.lock`,
for forgegit processes) and then moves the notes ref by compare-and-swap (`git update-ref REF NEW
OLD`, for any other writer), building the new notes commit on a private ref and retrying on conflict.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from . import git, safejson, summary
from .config import Settings
from .errors import ForgegitError
from .records import Comparison, EpochRecord, EvalResult, RecordError, RunRecord, check
from .workflow_commands import safe_text

NOTES_REF = "refs/notes/forgegit"
TMP_PREFIX = "refs/notes/forgegit-tmp/"  # private refs an update builds its notes commit on
FORMAT = 1
NOTE_DEPTH = 64  # JSON levels a note may nest (task fields are limited to tasks.MAX_DEPTH)
MAX_NOTE_BYTES = 64 << 20  # a note larger than this is not read (a 2,000-task evaluation's is about 1 MB)
CAS_ATTEMPTS = 100
LOCK_TIMEOUT_S = 120.0
_ZERO = "0" * 40

# Settings that change an evaluation's outcome (and so are part of its key). max_tokens cuts a reply
# (or lets a small model loop) and tool_choice decides whether some servers use the tools at all.
# Not timeout: it changes no reply, only how long forgegit waits for one, and a task it failed is
# run again under a larger one (evaluation.Evaluator); nor context_window, which describes the
# server (like OPENAI_BASE_URL), not the experiment.
KEY_SETTINGS = (
    "model", "agent", "system_prompt", "max_turns", "temperature", "python_tool",
    "checker", "tool_timeout", "memory_mb", "max_output", "max_tokens", "tool_choice",
)

_lock = threading.Lock()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


warn: Callable[[str], None] = _stderr  # where an invalid note is reported (once per commit and process)
_reported: set[str] = set()


def _report(commit: str, reason: str, what: str = "") -> None:
    """Say once per process that (part of) commit's note is ignored, and why, in one line."""
    once = f"{commit}:{what}"
    if once in _reported:
        return
    _reported.add(once)
    subject = f"{what} in the forgegit note" if what else "the forgegit note"
    warn(f"forgegit: warning: ignoring {subject} on commit {commit[:12]}: {safe_text(reason, 300)}")


def _key_of(tree: str, tasks_hash: str, values: dict[str, Any]) -> str:
    data = {"format": FORMAT, "tree": tree, "tasks": tasks_hash}
    data.update({k: values[k] for k in KEY_SETTINGS})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def eval_key(tree: str, tasks_hash: str, settings: Settings) -> str:
    """The key of an evaluation: sha256 over the functions tree, the task set and the result-relevant settings."""
    return _key_of(tree, tasks_hash, {k: getattr(settings, k) for k in KEY_SETTINGS})


# ---------------------------------------------------------------------------- reading


@dataclass
class _Final:
    """The `final` part of a note (on a run's final commit): the final gate and the sealed test."""

    run: str = ""
    val: Optional[Comparison] = None
    test: Optional[Comparison] = None


_PARTS: dict[str, Callable[[Any], None]] = {
    "evals": lambda v: _each(v, "evals", EvalResult),
    "runs": lambda v: _each(v, "runs", RunRecord),
    "epoch": lambda v: check(EpochRecord, v, "epoch"),
    "final": lambda v: check(_Final, v, "final"),
}


def _each(value: object, where: str, cls: type) -> None:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected an object")
    for k, v in value.items():
        check(cls, v, f"{where}.{k}")


def check_note(note: object) -> None:
    """Raise RecordError unless note has the shape of a forgegit note (unknown top-level keys are kept)."""
    if not isinstance(note, dict):
        raise RecordError(f"expected a JSON object, got {type(note).__name__}")
    for name, check_part in _PARTS.items():
        if name in note:
            check_part(note[name])


def parse_note(text: str | bytes, commit: str) -> Optional[dict[str, Any]]:
    """A note's JSON when it is a valid forgegit note; None (reported once) when it is not.
    A note that is not JSON at all is someone else's (e.g. `git notes add -m`): None, silently."""
    try:
        data = safejson.loads(text, max_depth=NOTE_DEPTH, max_bytes=MAX_NOTE_BYTES)
    except safejson.JSONError as exc:
        if "nested too deeply" in str(exc) or "too large" in str(exc):
            _report(commit, str(exc))
        return None
    try:
        check_note(data)
    except RecordError as exc:
        _report(commit, f"not a forgegit note ({exc})")
        return None
    result: dict[str, Any] = data
    return result


def read_note(repo: Path, commit: str) -> dict[str, Any]:
    """The commit's note as a dict ({} when there is none, or it is not a valid forgegit note)."""
    proc = git.run(["notes", "--ref", NOTES_REF, "show", commit], repo, check=False)
    if proc.returncode != 0:
        return {}
    return parse_note(proc.stdout, commit) or {}


_parsed: dict[str, Optional[dict[str, Any]]] = {}  # note blob -> its checked JSON (blobs never change)


def all_notes(repo: Path) -> dict[str, dict[str, Any]]:
    """Every valid note under the ref as {annotated object: note}, read in one `git cat-file --batch`."""
    listing = git.run(["notes", "--ref", NOTES_REF, "list"], repo, check=False).stdout.split()
    if not listing:
        return {}
    pairs = list(zip(listing[0::2], listing[1::2]))
    todo = [(b, o) for b, o in pairs if b not in _parsed]
    if todo:
        annotated = dict(todo)
        bodies = git.read_blobs(repo, list(annotated), MAX_NOTE_BYTES, lambda blob, size: _report(
            annotated[blob], f"too large: {size:,} bytes, at most {MAX_NOTE_BYTES:,}"))
        for blob, obj in todo:
            if blob in bodies:
                _parsed[blob] = parse_note(bodies[blob], obj)
    notes = {}
    for blob, obj in pairs:
        data = _parsed.get(blob)
        if data is not None:
            notes[obj] = data
    return notes


def _reusable(data: Any, key: str, commit: str, task_ids: Optional[frozenset[str]]) -> Optional[EvalResult]:
    """The recorded evaluation data as a result for key, or None when it cannot stand for key: its own
    key, or the key its tree, task hash and settings recompute to, differs; its counts disagree with
    its results; or its tasks are not the task set's."""
    if not data:
        return None
    result = EvalResult.from_json(data)
    try:
        recomputed = _key_of(result.tree, result.tasks_hash, result.settings)
    except (KeyError, TypeError, ValueError):
        recomputed = ""
    ids = [str(r.task_id) for r in result.results]
    if result.key != key or recomputed != key:
        why = "its key does not match what it says it evaluated"
    elif result.total != len(result.results) or result.passed != sum(r.passed for r in result.results) or len(set(ids)) != len(ids):
        why = "its counts do not match its task results"
    elif task_ids is not None and set(ids) != task_ids:
        why = "its tasks are not the task set's"
    else:
        return result
    _report(commit, why, f"evaluation {safe_text(key, 40)}")
    return None


def find(repo: Path, key: str, commit: Optional[str] = None, task_ids: Optional[Iterable[str]] = None) -> Optional[EvalResult]:
    """A recorded result for key: the commit's own note first, then any note (a known tree anywhere).
    With task_ids, only a result on exactly those tasks."""
    ids = frozenset(str(t) for t in task_ids) if task_ids is not None else None
    if commit:
        hit = _reusable(read_note(repo, commit).get("evals", {}).get(key), key, commit, ids)
        if hit:
            return hit
    for obj, note in all_notes(repo).items():
        hit = _reusable(note.get("evals", {}).get(key), key, obj, ids)
        if hit:
            return hit
    return None


# ---------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive flock on path (created if needed) for the block; other processes wait."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    raise ForgegitError(f"another forgegit process has held {path} for over {timeout:.0f}s") from None
                time.sleep(0.002 + random.random() * 0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ref(repo: Path, ref: str) -> str:
    return git.run(["rev-parse", "--verify", "--quiet", ref], repo, check=False).stdout.strip()


def _merge(note: dict[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    """note with parts merged in (dicts one level deep, parts winning)."""
    note = dict(note)
    for k, v in parts.items():
        if isinstance(v, dict) and isinstance(note.get(k), dict):
            note[k] = {**note[k], **v}
        else:
            note[k] = v
    return note


def _try_update(repo: Path, commit: str, parts: dict[str, Any]) -> Optional[dict[str, Any]]:
    """One compare-and-swap attempt: the new note, or None when the ref moved meanwhile."""
    old = _ref(repo, NOTES_REF)
    tmp = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if old:
            git.run(["update-ref", tmp, old, ""], repo)
        shown = git.run(["notes", "--ref", tmp, "show", commit], repo, check=False)
        current = (parse_note(shown.stdout, commit) or {}) if shown.returncode == 0 else {}
        note = _merge(current, parts)
        check_note(note)  # never write what a reader would refuse
        git.run(["notes", "--ref", tmp, "add", "-f", "-F", "-", commit], repo,
                input=json.dumps(note, sort_keys=True, indent=1))
        new = _ref(repo, tmp)
        swap = git.run(["update-ref", "-m", "forgegit: note", NOTES_REF, new, old or _ZERO], repo, check=False)
        return note if swap.returncode == 0 else None
    finally:
        git.run(["update-ref", "-d", tmp], repo, check=False)


def _drop_stale_tmp_refs(repo: Path) -> None:
    """Private refs left by a writer that was killed mid-update (its pid is gone)."""
    refs = git.out(["for-each-ref", "--format=%(refname)", TMP_PREFIX], repo).split()
    for ref in refs:
        pid_text = ref[len(TMP_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            git.run(["update-ref", "-d", ref], repo, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_swept: set[str] = set()  # repositories whose stale private refs this process removed


@contextlib.contextmanager
def notes_lock(repo: Path) -> Iterator[None]:
    """Held by every forgegit writer of the notes ref (threads and processes) for one update."""
    with _lock, _file_lock(git.state_dir(repo) / "notes.lock"):
        yield


def update_note(repo: Path, commit: str, **parts: Any) -> dict[str, Any]:
    """Merge parts into the commit's note (dicts merge one level deep) and write it back, atomically
    with respect to every other writer (see the module docstring); the note as written."""
    state = git.state_dir(repo)
    with notes_lock(repo):
        if str(state) not in _swept:
            _drop_stale_tmp_refs(repo)
            _swept.add(str(state))
        for attempt in range(CAS_ATTEMPTS):
            note = _try_update(repo, commit, parts)
            if note is not None:
                summary.write(repo, commit, note)  # the one line people read, beside the data
                return note
            time.sleep(random.random() * min(0.2, 0.002 * 2 ** attempt))  # someone else moved the ref
    raise ForgegitError(f"cannot update {NOTES_REF}: it kept changing under {CAS_ATTEMPTS} attempts")


def record(repo: Path, commit: str, result: EvalResult) -> None:
    """Record an evaluation in the commit's note."""
    update_note(repo, commit, evals={result.key: result.to_json()})


def _listing(repo: Path, ref: str) -> dict[str, str]:
    """{annotated object: note blob} under a notes ref."""
    words = git.run(["notes", "--ref", ref, "list"], repo, check=False).stdout.split()
    return {obj: blob for blob, obj in zip(words[0::2], words[1::2])}


def merge_from(repo: Path, other_ref: str) -> int:
    """Merge the notes under other_ref (another clone's, just fetched) into refs/notes/forgegit without
    losing either side: a commit annotated on both sides gets both notes' evaluations and runs (this
    clone's entry wins where both have the same key). The number of commits whose notes were combined."""
    theirs = _listing(repo, other_ref)
    if not theirs:
        return 0
    with notes_lock(repo):
        if not _ref(repo, NOTES_REF):
            git.run(["update-ref", NOTES_REF, _ref(repo, other_ref), _ZERO], repo)
            return 0
        ours_before = _listing(repo, NOTES_REF)
        git.run(["notes", "--ref", NOTES_REF, "merge", "-q", "-s", "ours", other_ref], repo)
    both = [obj for obj, blob in theirs.items() if obj in ours_before and ours_before[obj] != blob]
    combined = 0
    for obj in both:
        shown = git.run(["cat-file", "blob", theirs[obj]], repo, check=False)
        their_note = parse_note(shown.stdout, obj) if shown.returncode == 0 else None
        if not their_note:
            continue
        ours = read_note(repo, obj)
        update_note(repo, obj, **_merge(their_note, ours))
        combined += 1
    return combined
