"""Agent conversations stored in git beside the results they explain.

Each task's conversation is a JSON blob; an evaluation's blobs form one tree (`<task>.json` entries),
and the evaluation's note names that tree (`EvalResult.conversations`, an object id, never a path).
The trees stay reachable, and travel, under a ref of their own: `refs/forgegit/conversations` is a
commit whose tree has one entry per evaluation key. It is pushed with the notes (`push`) and fetched
beside them, so a fresh clone's optimizer reads the conversations another machine recorded.

A conversation is cut before it is stored (each message's text, then middle messages), an evaluation
stores at most `conversation_kb` KiB (failed tasks first), and `prune` (`forgegit gc`) drops the
conversations of evaluations no note refers to any more or that are older than a number of days.

Blobs and trees come from whoever can push the ref or a note: they are read as untrusted input.
A missing object, a tree or blob over the size limits, JSON that is not a conversation, or a blob
filed under another task's name is reported in one line and left out, never raised.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from . import git, safejson
from .chat import Conversation, Message
from .workflow_commands import safe_text

REF = "refs/forgegit/conversations"
REMOTE_REF = "refs/forgegit/conversations-remote"  # where `push` fetches the remote's before merging
MAX_MESSAGE_CHARS = 6000  # one message's text (and one tool call's arguments) as stored; cut in the middle
MAX_BLOB_BYTES = 128 << 10  # one stored conversation; a longer one loses middle messages first
READ_BLOB_BYTES = 256 << 10  # a blob larger than this is not read (stored ones are at most MAX_BLOB_BYTES)
MAX_TREE_BYTES = 16 << 20  # an evaluation's tree listing (about 200,000 entries)
MAX_DEPTH = 16  # JSON levels of a conversation (forgegit's own need 5)
CAS_ATTEMPTS = 50
_ZERO = "0" * 40
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_KEY = re.compile(r"[0-9a-f]{8,64}")
IDENTITY = {"GIT_AUTHOR_NAME": "forgegit", "GIT_AUTHOR_EMAIL": "forgegit@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "forgegit", "GIT_COMMITTER_EMAIL": "forgegit@users.noreply.github.com"}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


warn: Callable[[str], None] = _stderr  # where an unreadable conversation is reported (once per object)
_reported: set[str] = set()


def _report(what: str, reason: str) -> None:
    if what in _reported:
        return
    _reported.add(what)
    warn(f"forgegit: warning: ignoring {what}: {safe_text(reason, 300)}")


def file_name(task_id: str) -> str:
    """A task's conversation file name: its id with unsafe characters replaced, plus `.json`."""
    return (re.sub(r"[^A-Za-z0-9._-]", "_", str(task_id))[:100] or "task") + ".json"


# ---------------------------------------------------------------------------- compacting


def _cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 40) // 2
    return f"{text[:half]}\n…[{len(text) - 2 * half:,} characters cut]…\n{text[-half:]}"


def _text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _compact_message(m: Any) -> dict[str, Any]:
    """A message with only what the optimizer reads: role, text, tool calls (name, arguments, id), cut."""
    if not isinstance(m, dict):
        return {"role": "note", "content": _cut(str(m))}
    out: dict[str, Any] = {"role": str(m.get("role", "?"))[:20], "content": _cut(_text(m.get("content")))}
    if m.get("tool_call_id") is not None:
        out["tool_call_id"] = str(m["tool_call_id"])[:100]
    if m.get("name") is not None:
        out["name"] = str(m["name"])[:100]
    calls = []
    for c in (m.get("tool_calls") or []) if isinstance(m.get("tool_calls"), list) else []:
        fn = (c.get("function") if isinstance(c, dict) else None) or {}
        fn = fn if isinstance(fn, dict) else {}
        args = fn.get("arguments", "")
        calls.append({"id": str(c.get("id", ""))[:100] if isinstance(c, dict) else "",
                      "function": {"name": str(fn.get("name", ""))[:100],
                                   "arguments": _cut(args if isinstance(args, str) else json.dumps(args, default=str))}})
    if calls:
        out["tool_calls"] = calls
    return out


def compact(data: dict[str, Any], max_bytes: int = MAX_BLOB_BYTES) -> bytes:
    """A conversation record as stored: messages cut, then middle messages left out until it fits max_bytes."""
    record = dict(data)
    messages = [_compact_message(m) for m in (record.get("messages") or [])]
    for k in ("question", "expected", "answer", "feedback", "error"):
        if isinstance(record.get(k), str):
            record[k] = _cut(record[k])

    def encoded(msgs: list[Message]) -> bytes:
        return json.dumps({**record, "messages": msgs}, ensure_ascii=False, default=str).encode()

    blob = encoded(messages)
    head, body, lost = messages[:2], messages[2:], 0  # the system prompt and the question stay
    while len(blob) > max_bytes and len(body) > 1:  # the last message (the answer) stays too
        drop = max(1, (len(body) - 1) // 4)
        body, lost = body[drop:], lost + drop
        messages = head + [{"role": "note", "content": f"[{lost} messages left out for space]"}] + body
        blob = encoded(messages)
    if len(blob) > max_bytes:  # a few giant messages: cut every text harder
        messages = [{**m, "content": _cut(str(m.get("content", "")), 1000)} for m in messages]
        blob = encoded(messages)
    return blob


def stage(directory: Path, record: dict[str, Any]) -> None:
    """Write one task's conversation record (compacted) into an evaluation's local staging directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / file_name(str(record.get("task_id", "")))).write_bytes(compact(record))


# ---------------------------------------------------------------------------- writing


def _git(args: list[str], repo: Path, data: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(git.command(args), cwd=repo, input=data, capture_output=True, env=git.clean_env(IDENTITY))


def _checked(proc: subprocess.CompletedProcess[bytes], what: str) -> str:
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise git.GitError(f"git {what} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stdout.decode().strip()


def store(repo: Path, directory: Path, order: Iterable[str], budget_bytes: int) -> str:
    """Write the staged conversations of the tasks in order (failed first, say) as git blobs and one tree,
    at most budget_bytes in all; the tree's id ("" when nothing was stored). Tasks that do not fit are
    left out. The tree is not reachable until `publish` adds it to the ref."""
    if budget_bytes <= 0 or not directory.is_dir():
        return ""
    chosen: list[tuple[str, Path]] = []
    used = 0
    seen: set[str] = set()
    for task_id in order:
        name = file_name(task_id)
        path = directory / name
        if name in seen or not path.is_file():
            continue
        size = path.stat().st_size
        if used + size > budget_bytes:
            continue  # a smaller one later may still fit
        seen.add(name)
        used += size
        chosen.append((name, path))
    if not chosen:
        return ""
    listing = "\n".join(str(p) for _, p in chosen) + "\n"
    oids = _checked(_git(["hash-object", "-w", "--stdin-paths"], repo, listing.encode()), "hash-object").split()
    entries = "".join(f"100644 blob {oid}\t{name}\n" for (name, _), oid in zip(chosen, oids))
    return _checked(_git(["mktree"], repo, entries.encode()), "mktree")


def _ref(repo: Path, ref: str = REF) -> str:
    return git.run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo, check=False).stdout.strip()


def _root_entries(repo: Path, commit: str) -> dict[str, str]:
    """{evaluation key: tree id} of the ref's commit (entries that are not key -> tree are dropped)."""
    if not commit:
        return {}
    with git.Objects(repo) as objects:
        return {e.name: e.oid for e in objects.entries(commit) if e.kind == "tree" and _KEY.fullmatch(e.name)}


def _commit(repo: Path, entries: dict[str, str]) -> str:
    listing = "".join(f"040000 tree {oid}\t{key}\n" for key, oid in sorted(entries.items()))
    tree = _checked(_git(["mktree"], repo, listing.encode()), "mktree")
    # A snapshot without parents: what prune leaves out is unreachable, so `git gc` can free it.
    return _checked(_git(["commit-tree", tree, "-m", "forgegit: agent conversations"], repo), "commit-tree")


@contextlib.contextmanager
def _lock(repo: Path) -> Iterator[None]:
    from .notes import _file_lock  # the same flock helper the notes use
    with _file_lock(git.state_dir(repo) / "conversations.lock"):
        yield


def _update(repo: Path, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
    """Apply change to the ref's {key: tree} by compare-and-swap (other writers are never lost)."""
    with _lock(repo):
        for attempt in range(CAS_ATTEMPTS):
            old = _ref(repo)
            entries = change(_root_entries(repo, old))
            new = _commit(repo, entries) if entries else ""
            if new == old:
                return entries
            args = ["update-ref", REF, new, old or _ZERO] if new else ["update-ref", "-d", REF, old]
            if git.run(args, repo, check=False).returncode == 0:
                return entries
            time.sleep(random.random() * min(0.2, 0.002 * 2 ** attempt))
    raise git.GitError(f"cannot update {REF}: it kept changing under {CAS_ATTEMPTS} attempts")


def publish(repo: Path, trees: dict[str, str]) -> None:
    """Add {evaluation key: tree id} to the ref, so the conversations are kept and pushed."""
    trees = {k: v for k, v in trees.items() if v and _KEY.fullmatch(k) and _OID.fullmatch(v)}
    if trees:
        _update(repo, lambda entries: {**entries, **trees})


# ---------------------------------------------------------------------------- reading


def shape_problem(data: object, task_id: str) -> str:
    """Why data is not the stored conversation of task_id ("" when it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if str(data.get("task_id")) != task_id and file_name(str(data.get("task_id"))) != file_name(task_id):
        return f"it is filed under task {task_id} but says it is task {safe_text(str(data.get('task_id')), 60)}"
    messages = data.get("messages")
    if not isinstance(messages, list):
        return "messages is not a list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}] is not a message with a role"
        if not isinstance(m.get("content"), (str, type(None))):
            return f"messages[{i}].content is not text"
        calls = m.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(
                isinstance(c, dict) and isinstance(c.get("function", {}), dict) for c in calls)):
            return f"messages[{i}].tool_calls is not a list of calls"
    return ""


def load(repo: Path, tree: str, task_ids: Optional[Iterable[str]] = None) -> dict[str, Conversation]:
    """The stored messages of an evaluation's tasks (all, or those of task_ids), by task id.
    {} when tree is empty or not in this repository; an unreadable entry is reported and left out."""
    if not tree:
        return {}
    where = f"the conversations {safe_text(tree, 70)}"
    if not _OID.fullmatch(tree):
        _report(where, "not an object id")
        return {}
    with git.Objects(repo) as objects:
        kind = objects.info(tree)
        if kind is None:
            return {}  # not fetched here (or pruned): the prompt says there is no conversation
        if kind[0] != "tree":
            _report(where, f"a {kind[0]}, not a tree")
            return {}
        if kind[1] > MAX_TREE_BYTES:
            _report(where, f"its listing is {kind[1]:,} bytes, at most {MAX_TREE_BYTES:,}")
            return {}
        by_name = {e.name: e.oid for e in objects.entries(tree) if e.kind == "blob"}
        wanted = ([(str(t), file_name(str(t))) for t in task_ids] if task_ids is not None
                  else [(n[:-5], n) for n in by_name if n.endswith(".json")])
        readable: list[tuple[str, str]] = []
        contents: dict[str, bytes] = {}
        for task_id, name in wanted:
            oid = by_name.get(name)
            if oid is None:
                continue
            if oid not in contents:
                body = objects.blob(oid, READ_BLOB_BYTES)
                if body is None:
                    found = objects.info(oid)  # missing (not fetched), or too large to read
                    if found is not None and found[1] > READ_BLOB_BYTES:
                        _report(f"the conversation of task {safe_text(task_id, 60)} ({oid[:12]})",
                                f"{found[1]:,} bytes, at most {READ_BLOB_BYTES:,}")
                    continue
                contents[oid] = body
            readable.append((task_id, oid))
    out: dict[str, Conversation] = {}
    for task_id, oid in readable:
        what = f"the conversation of task {safe_text(task_id, 60)} ({oid[:12]})"
        try:
            data = safejson.loads(contents.get(oid, b""), max_depth=MAX_DEPTH, max_bytes=READ_BLOB_BYTES)
        except safejson.JSONError as exc:
            _report(what, f"not JSON within bounds ({exc})")
            continue
        problem = shape_problem(data, task_id)
        if problem:
            _report(what, problem)
            continue
        recorded = str(data["task_id"]) if task_ids is None else task_id
        out[recorded] = data["messages"]
    return out


def records(repo: Path, tree: str) -> list[dict[str, Any]]:
    """Every stored conversation record of a tree as JSON (for `eval --out`, so shards carry theirs)."""
    out = []
    for task_id, messages in load(repo, tree).items():
        out.append({"task_id": task_id, "messages": messages})
    return out


# ---------------------------------------------------------------------------- travelling


def push(repo: Path, remote: str = "origin", drop: frozenset[str] | set[str] = frozenset()) -> Optional[str]:
    """Push the ref to remote, merged with the remote's own first (every evaluation of both is kept,
    except the keys in drop: what `forgegit gc` pruned); a warning line, or None when done."""
    if not _ref(repo) and not drop:
        return None
    for _ in range(3):
        fetched = git.run(["fetch", "--quiet", remote, f"+{REF}:{REMOTE_REF}"], repo, check=False)
        theirs = _ref(repo, REMOTE_REF) if fetched.returncode == 0 else ""
        if theirs:
            remote_entries = {k: v for k, v in _root_entries(repo, theirs).items() if k not in drop}
            _update(repo, lambda entries: {**remote_entries, **entries})
        lease = f"--force-with-lease={REF}:{theirs}"
        spec = f"{REF}:{REF}" if _ref(repo) else f":{REF}"  # everything pruned: delete the remote's
        if git.run(["push", "--quiet", lease, remote, spec], repo, check=False).returncode == 0:
            git.run(["update-ref", "-d", REMOTE_REF], repo, check=False)
            return None
    return f"could not push {REF} to {remote}: other machines' optimizers will not see these conversations"


def fetch(repo: Path, remote: str = "origin") -> bool:
    """Fetch the remote's conversations and merge them into the ref (local ones are kept); whether it had any."""
    if git.run(["fetch", "--quiet", remote, f"+{REF}:{REMOTE_REF}"], repo, check=False).returncode != 0:
        return False
    theirs = _root_entries(repo, _ref(repo, REMOTE_REF))
    if theirs:
        _update(repo, lambda entries: {**theirs, **entries})
    git.run(["update-ref", "-d", REMOTE_REF], repo, check=False)
    return bool(theirs)


# ---------------------------------------------------------------------------- pruning


@dataclass
class PruneReport:
    """What `prune` kept and removed: evaluations and the bytes of their conversations."""

    kept: int
    removed: int
    kept_bytes: int
    removed_bytes: int
    staging_removed: int = 0
    removed_keys: list[str] = field(default_factory=list)


def _age_days(created: str, now: _dt.datetime) -> float:
    try:
        when = _dt.datetime.fromisoformat(created)
    except ValueError:
        return 0.0  # an unreadable date is not a reason to drop anything
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return (now - when).total_seconds() / 86400


def prune(repo: Path, referenced: dict[str, str], *, older_than_days: Optional[float] = None,
          dry_run: bool = False, now: Optional[_dt.datetime] = None) -> PruneReport:
    """Drop from the ref the conversations of evaluations not in referenced ({key: created, from the
    notes}) and, with older_than_days, of evaluations created longer ago; also the local staging
    directories of evaluations already stored. The objects become unreachable (`git gc` frees them)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    entries = _root_entries(repo, _ref(repo))

    def keep(key: str) -> bool:
        if key not in referenced:
            return False
        return older_than_days is None or _age_days(referenced[key], now) <= older_than_days

    kept = {k: v for k, v in entries.items() if keep(k)}
    with git.Objects(repo) as objects:
        blobs = {k: [e.oid for e in objects.entries(v) if e.kind == "blob"] for k, v in entries.items()}
    size_of = git.blob_sizes(repo, [oid for oids in blobs.values() for oid in oids])
    sizes = {k: sum(size_of.get(oid, 0) for oid in oids) for k, oids in blobs.items()}
    report = PruneReport(len(kept), len(entries) - len(kept), sum(sizes[k] for k in kept),
                         sum(sizes[k] for k in entries if k not in kept), 0, sorted(set(entries) - set(kept)))
    staging = git.state_dir(repo) / "trajectories"
    stale = [d for d in sorted(staging.iterdir()) if d.is_dir() and d.name in entries] if staging.is_dir() else []
    report.staging_removed = len(stale)
    if not dry_run:
        if report.removed:
            _update(repo, lambda current: {k: v for k, v in current.items() if keep(k)})
        for d in stale:
            shutil.rmtree(d, ignore_errors=True)
    return report
