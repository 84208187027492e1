"""Task sets: JSONL files, one task a line, with configurable question/answer fields."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ForgegitError


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


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def parse_tasks(data: bytes, path: str, question_field: str = "question", answer_field: str = "answer") -> TaskSet:
    """Parse JSONL task data; every problem names `path:line`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise TaskFileError(f"{path}:{lineno}: not valid JSON ({exc.args[0].split(':')[0]})") from None
        if not isinstance(obj, dict):
            raise TaskFileError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        for name in (question_field, answer_field):
            if name not in obj or obj[name] is None or _text(obj[name]).strip() == "":
                have = ", ".join(sorted(obj)) or "none"
                raise TaskFileError(
                    f"{path}:{lineno}: missing field {name!r} (fields here: {have}; "
                    f"use --question-field/--answer-field to map them)")
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
