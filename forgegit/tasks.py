"""Task sets: JSONL files, one task a line, with configurable question/answer fields."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import safejson
from .errors import ForgegitError

MAX_LINE_BYTES = 1 << 20  # one task line
MAX_DEPTH = 32  # how deeply a task line's JSON may nest (forgegit's notes hold it a few levels deeper)


class TaskFileError(ForgegitError):
    """A task file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    answer: str
    line: int
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class TaskSet:
    path: str
    sha256: str
    tasks: tuple[Task, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    def subset(self, ids: list[str], tag: str) -> "TaskSet":
        """The tasks with these ids, as a task set whose hash says which subset it is."""
        wanted = set(ids)
        tasks = tuple(t for t in self.tasks if t.id in wanted)
        digest = hashlib.sha256(f"{self.sha256}:{tag}:{','.join(sorted(wanted))}".encode()).hexdigest()
        return TaskSet(self.path, digest, tasks)

    def shard(self, k: int, n: int) -> "TaskSet":
        """Shard k of n (1-based): a deterministic slice by position."""
        if not (1 <= k <= n):
            raise ForgegitError(f"--shard {k}/{n}: K must be between 1 and N")
        ids = [t.id for i, t in enumerate(self.tasks) if i % n == k - 1]
        return self.subset(ids, f"shard{k}/{n}")

    def sample(self, size: int, seed: int) -> "TaskSet":
        """A deterministic random sample of size tasks (all of them when size >= len)."""
        if size <= 0 or size >= len(self.tasks):
            return self
        rng = random.Random(seed)
        ids = [t.id for t in rng.sample(list(self.tasks), size)]
        return self.subset(ids, f"sample{seed}/{size}")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _kind(value: object) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), "null" if value is None else type(value).__name__)


def _check_types(obj: dict[str, Any], path: str, lineno: int, question_field: str, answer_field: str) -> None:
    """The question is text or a number, the answer text, a number or true/false, the id text or an integer."""
    for name, allowed, kinds in ((question_field, (str, int, float), "a string or a number"),
                                 (answer_field, (str, int, float, bool), "a string, a number or true/false")):
        value = obj[name]
        if not isinstance(value, allowed) or (name == question_field and isinstance(value, bool)):
            raise TaskFileError(f"{path}:{lineno}: field {name!r} must be {kinds}, got {_kind(value)}")
    task_id = obj.get("id")
    if task_id is not None and (not isinstance(task_id, (str, int)) or isinstance(task_id, bool)):
        raise TaskFileError(f"{path}:{lineno}: field 'id' must be a string or an integer, got {_kind(task_id)}")


def parse_tasks(data: bytes, path: str, question_field: str = "question", answer_field: str = "answer") -> TaskSet:
    """Parse JSONL task data; every problem names `path:line`. Lines are checked in full before any
    model call is made: their size, how deeply they nest, and the types of question, answer and id
    (so nothing in a task can break the result note that is written after the calls were paid for)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        size = len(line.encode("utf-8", "surrogatepass"))
        if size > MAX_LINE_BYTES:
            raise TaskFileError(f"{path}:{lineno}: the line is {size:,} bytes long (a task line may have at most {MAX_LINE_BYTES:,})")
        try:
            obj = safejson.loads(line, max_depth=MAX_DEPTH)
        except safejson.JSONError as exc:
            why = str(exc) if "nested" in str(exc) else exc.args[0].split(":")[0]
            raise TaskFileError(f"{path}:{lineno}: not valid JSON ({why})") from None
        if not isinstance(obj, dict):
            raise TaskFileError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        for name in (question_field, answer_field):
            if name not in obj or obj[name] is None or _text(obj[name]).strip() == "":
                have = ", ".join(sorted(obj)) or "none"
                raise TaskFileError(
                    f"{path}:{lineno}: missing field {name!r} (fields here: {have}; "
                    f"use --question-field/--answer-field to map them)")
        _check_types(obj, path, lineno, question_field, answer_field)
        task_id = _text(obj["id"]) if obj.get("id") not in (None, "") else f"line-{lineno}"
        if task_id in seen:
            raise TaskFileError(f"{path}:{lineno}: duplicate task id {task_id!r} (first on line {seen[task_id]})")
        seen[task_id] = lineno
        extra = {k: v for k, v in obj.items() if k not in (question_field, answer_field, "id")}
        tasks.append(Task(task_id, _text(obj[question_field]), _text(obj[answer_field]), lineno, extra))
    if not tasks:
        raise TaskFileError(f"{path}: no tasks (the file is empty)")
    digest = hashlib.sha256(data + f"\0{question_field}\0{answer_field}".encode()).hexdigest()
    return TaskSet(path, digest, tuple(tasks))


def load_tasks(path: str | Path, question_field: str = "question", answer_field: str = "answer") -> TaskSet:
    """Load a JSONL task file, or raise TaskFileError naming the file and line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise TaskFileError(f"{path}: task file not found") from None
    except IsADirectoryError:
        raise TaskFileError(f"{path}: is a directory, expected a JSONL task file") from None
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_tasks(data, str(path), question_field, answer_field)
