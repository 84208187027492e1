"""Changes to function files: an `Action` (add, revise or remove `functions/<name>.py`), the file set
after actions, and writing them into a worktree's `functions/` only (no symlink followed, atomically)."""
from __future__ import annotations

import keyword
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ForgegitError
from .git import FUNCTIONS_DIR
from .records import ActionRecord

MAX_RECORD_NAME = 200  # characters of a name in an action record
MAX_RECORD_REASON = 2000  # characters of a rejection reason


@dataclass
class Action:
    """One proposed change to functions/: add, revise or remove the function `name`."""

    kind: str  # "add" | "revise" | "remove"
    name: str
    code: str = ""
    description: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)

    def record(self, accepted: bool = True, reason: str = "") -> ActionRecord:
        return action_record(self.kind, self.name, accepted, reason)


def action_record(kind: str, name: str, accepted: bool, reason: str = "") -> ActionRecord:
    """An action record with its model-chosen texts cut to a size a note and a log line can hold."""
    def cut(text: str, limit: int) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return ActionRecord(cut(str(kind), 40), cut(str(name), MAX_RECORD_NAME), accepted, cut(str(reason), MAX_RECORD_REASON))


def file_name(name: str) -> str:
    return f"{name}.py"


def name_problem(name: str) -> Optional[str]:
    """Why name cannot be a function file name (path parts, non-identifiers, keywords), or None."""
    if not isinstance(name, str) or not name:
        return "missing name"
    if "/" in name or "\\" in name or ".." in name or os.path.isabs(name):
        return f"name {name!r} is a path: use a plain Python identifier"
    if not name.isidentifier() or not name.isascii():
        return f"name {name!r} is not a Python identifier"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"name {name!r} is a Python keyword"
    from .functions import reserved_name_reason
    reserved = reserved_name_reason(name)
    if reserved:
        return f"name {name!r} is reserved: {reserved}"
    if name.startswith("_"):
        return f"name {name!r} is private (starts with _): public functions only"
    try:
        from .functions import validate_name
    except ImportError:
        return None
    return validate_name(name)


def _checked_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ForgegitError(f"refusing to write function {name!r}: {problem}")
    return name


def _source_bytes(code: str) -> bytes:
    return (code if code.endswith("\n") else code + "\n").encode("utf-8")


def apply_actions(files: dict[str, bytes], actions: list[Action]) -> dict[str, bytes]:
    """The file set {file name: bytes} after applying actions in order (files is not changed)."""
    out = dict(files)
    for a in actions:
        fname = file_name(_checked_name(a.name))
        if a.kind == "remove":
            out.pop(fname, None)
        else:
            out[fname] = _source_bytes(a.code)
    return out


def _functions_dir(worktree: Path) -> Path:
    """worktree/functions, created if needed; refused when it is a symlink or resolves elsewhere."""
    root = Path(worktree).resolve()
    fdir = root / FUNCTIONS_DIR
    if fdir.is_symlink():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/ in {root} is a symlink")
    if fdir.exists() and not fdir.is_dir():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR} in {root} is not a directory")
    fdir.mkdir(exist_ok=True)
    if fdir.resolve() != root / FUNCTIONS_DIR:
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/ resolves outside {root}")
    return fdir


def _target(fdir: Path, name: str) -> Path:
    target = fdir / file_name(_checked_name(name))
    if target.is_symlink():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} is a symlink")
    if target.exists() and not target.is_file():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} is not a regular file")
    if target.resolve().parent != fdir:
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} resolves outside {FUNCTIONS_DIR}/")
    return target


def _write_file(target: Path, data: bytes) -> None:
    """Write data to target atomically (a temp file in the same directory, then rename), following no symlink."""
    tmp = target.with_name(f".{target.name}.forgegit-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_actions(worktree: Path, actions: list[Action]) -> list[str]:
    """Apply actions to worktree/functions/ only; the changed paths relative to worktree, in order."""
    fdir = _functions_dir(Path(worktree))
    targets = [(a, _target(fdir, a.name)) for a in actions]  # check every path before writing any
    changed: list[str] = []
    for action, target in targets:
        if action.kind == "remove":
            if not target.exists():
                continue
            target.unlink()
        elif action.kind in ("add", "revise"):
            data = _source_bytes(action.code)
            if target.exists() and target.read_bytes() == data:
                continue
            _write_file(target, data)
        else:
            raise ForgegitError(f"unknown action kind {action.kind!r}")
        rel = f"{FUNCTIONS_DIR}/{target.name}"
        if rel not in changed:
            changed.append(rel)
    return changed
