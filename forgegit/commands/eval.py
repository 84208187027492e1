"""`forgegit eval`: evaluate the functions at a git revision on a task set."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from .. import conversations, git, notes, safejson
from ..cost import reprice
from ..errors import ForgegitError
from ..evaluation import Evaluator, breakdown, store_conversations, trajectories_dir
from ..isolation import Isolation
from ..records import EvalResult, TaskResult, Usage, parse
from ..tasks import TaskSet
from ..workspace import Workspace, is_terminal
from ._options import agent_options
from ._sandbox import announce_sandbox

if TYPE_CHECKING:  # click's progress bar class is private: named for the type checker only
    from click._termui_impl import ProgressBar

CONVERSATIONS_FIELD = "conversation_records"  # in a shard file (`--out`): the conversations it recorded


class ProgressLine:
    """One progress bar per evaluation on stderr (click's): tasks done, passed and tokens of this
    evaluation, and the time left (from this evaluation's pace). Shown only where stderr is a terminal."""

    def __init__(self) -> None:
        self.passed = self.tokens = self.done = self.total = self.resumed = 0
        self.started = 0.0
        self._bar: Optional[ProgressBar[int]] = None

    def begin(self, label: str, total: int, done: int) -> None:
        self.end()
        self.passed = self.tokens = 0
        self.done, self.total, self.resumed, self.started = done, total, done, time.monotonic()
        self._bar = click.progressbar(
            length=total, label=f"  {label}", file=sys.stderr, show_eta=False, show_pos=True, show_percent=False,
            item_show_func=lambda _: self.info(), width=24)
        self._bar.__enter__()
        if done:
            self._bar.update(done)

    def info(self) -> str:
        text = f"{self.passed} passed, {self.tokens:,} tokens"
        ran = self.done - self.resumed
        if 0 < ran and self.done < self.total:
            left = (time.monotonic() - self.started) / ran * (self.total - self.done)
            text += f", eta {eta(left)}"
        return text

    def __call__(self, done: int, total: int, result: TaskResult) -> None:
        self.passed += int(result.passed)
        self.tokens += result.usage.total_tokens
        self.done = done
        if self._bar is not None:
            self._bar.update(1)  # the label comes from info(), not from the item

    def end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def eta(seconds: float) -> str:
    """Time left for people: "4s", "2m05s", "1h02m"."""
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def summary_lines(result: EvalResult, reused: bool) -> list[str]:
    u = result.usage
    cached = f" of which {u.cached_tokens:,} cached" if u.cached_tokens else ""
    lines = [
        f"revision {result.revision[:12]} (functions/ tree {result.tree[:12]}) on {result.tasks_file}, model {result.model}",
        f"passed {result.passed}/{result.total}  score {result.score:.3f}  tokens {u.total_tokens:,} "
        f"(prompt {u.prompt_tokens:,}{cached}, completion {u.completion_tokens:,})  cost ${u.cost:.4f}",
    ]
    failures = result.failures_by_kind()
    if failures:
        lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items())))
    if reused:
        lines.append("recorded result reused from git notes: no model call")
    return lines


def _merge(ws: Workspace, rev: str, tasks_path: str, files: tuple[str, ...]) -> EvalResult:
    """Combine shard results (from `--shard K/N --out FILE`) into one result for the whole task set."""
    full = ws.task_set(tasks_path, from_cli=True)
    commit = git.resolve(ws.root, rev)
    key = notes.eval_key(git.functions_tree(ws.root, commit), full.sha256, ws.settings)
    parts: list[EvalResult] = []
    raw: list[Any] = []
    for f in files:
        try:
            raw.append(safejson.loads(Path(f).read_bytes()))
            parts.append(parse(EvalResult, raw[-1]))
        except (OSError, ValueError) as exc:  # ValueError: not JSON, too deep, or not a result's shape
            raise ForgegitError(f"{f}: not a shard result written by `forgegit eval --out` ({exc})") from None
    trees = {p.tree for p in parts}
    if trees != {git.functions_tree(ws.root, commit)}:
        raise ForgegitError(f"shards were evaluated on other functions than {rev} (trees {', '.join(t[:12] for t in trees)})")
    by_id = {r.task_id: r for p in parts for r in p.results}
    missing = [t.id for t in full.tasks if t.id not in by_id]
    if missing:
        raise ForgegitError(f"shards do not cover the task set: {len(missing)} tasks missing (first: {missing[0]})")
    results = [by_id[t.id] for t in full.tasks]
    usage = Usage()
    for p in parts:
        usage.add(p.usage)
    for data in raw:  # the conversations each shard carried: staged, then stored like a fresh evaluation's
        for record in _shard_conversations(data):
            conversations.stage(trajectories_dir(ws.root, key), record)
    tree = store_conversations(ws.root, key, results, ws.settings.conversation_kb)
    merged = EvalResult(key, commit, parts[0].tree, full.path, full.sha256, ws.settings.model,
                        sum(r.passed for r in results), len(results), usage, results, parts[0].created,
                        parts[0].settings, conversations=tree)
    notes.record(ws.root, commit, merged)
    return merged


def _shard_conversations(data: object) -> list[dict[str, Any]]:
    """The conversation records a shard file carries (`conversation_records`), each checked like a stored one."""
    out = []
    items = data.get(CONVERSATIONS_FIELD) if isinstance(data, dict) else None
    for item in items if isinstance(items, list) else []:
        task_id = str(item.get("task_id", "")) if isinstance(item, dict) else ""
        if task_id and not conversations.shape_problem(item, task_id):
            out.append({"task_id": task_id, "messages": item["messages"]})
    return out


@click.command("eval")
@click.argument("rev", default="HEAD")
@click.option("--tasks", "tasks_path", help="Task file (JSONL). Default: `tasks` in forgegit.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the score and per-task results.")
@click.option("--by", "by_field", help="Break the score down by a task field (e.g. subject).")
@click.option("--shard", help="Evaluate only shard K/N of the tasks (deterministic slice); use with --out.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write the result JSON to this file.")
@click.option("--merge", "merge_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Combine shard result files into one recorded result (repeatable).")
@agent_options
def command(ws: Workspace, rev: str, tasks_path: Optional[str], as_json: bool, by_field: Optional[str],
            shard: Optional[str], out_path: Optional[str], merge_files: tuple[str, ...]) -> None:
    """Evaluate the functions at REV (default HEAD, read from git) on a task set."""
    path = tasks_path or ws.settings.tasks
    reused, isolation = False, None
    if merge_files:
        _warn_uncommitted(ws, rev)
        result = _merge(ws, rev, path, merge_files)
    else:
        tasks = ws.task_set(path, from_cli=bool(tasks_path))
        if by_field:
            check_field(tasks, by_field)
        if shard is not None:
            try:
                k, n = (int(x) for x in shard.split("/"))
            except ValueError:
                raise ForgegitError(f"--shard {shard!r}: expected K/N, e.g. 2/4") from None
            tasks = tasks.shard(k, n)
        _warn_uncommitted(ws, rev)  # after the input checks: a bad --tasks is one error line
        result, reused, isolation = asyncio.run(_evaluate(ws, rev, tasks, is_terminal() and not as_json, as_json))
    reprice(result, ws.settings.prices)  # the cost of the recorded tokens at today's [prices]
    if out_path:  # a shard's file carries its conversations: the merging machine stores them in git
        data = {**result.to_json(), CONVERSATIONS_FIELD: conversations.records(ws.root, result.conversations)}
        Path(out_path).write_text(json.dumps(data, indent=1))
    if as_json:
        data = result.to_json()
        data["reused"] = reused
        data["sandbox"] = isolation.to_json() if isolation else None  # None: no function code ran
        if by_field:
            data["by"] = {v: {"passed": p, "total": t} for v, p, t in breakdown(result, by_field)}
        click.echo(json.dumps(data))
        return
    for line in summary_lines(result, reused):
        click.echo(line)
    if by_field:
        click.echo(f"by {by_field}:")
        for value, p, t in breakdown(result, by_field):
            click.echo(f"  {value:<30} {p:>4}/{t:<4} {p / t:.3f}")


def check_field(tasks: TaskSet, field_name: str) -> None:
    """Refuse `--by FIELD` when no task has that field (before any model call)."""
    if field_name == "id" or any(field_name in t.fields for t in tasks.tasks):
        return
    names = sorted({"id", *(k for t in tasks.tasks for k in t.fields)})
    raise ForgegitError(f"--by {field_name}: no task in {tasks.path} has a field {field_name!r} "
                        f"(fields: {', '.join(names)})")


def _warn_uncommitted(ws: Workspace, rev: str) -> None:
    """eval reads functions/ from git: say so when the working tree's functions/ differs from HEAD."""
    if rev not in ("HEAD", "@"):
        return
    changed = [line for line in git.run(["status", "--porcelain", "--untracked-files=all", "--", git.FUNCTIONS_DIR],
                                        ws.root, check=False).stdout.splitlines() if line.strip()]
    if changed:
        click.echo(f"forgegit: note: functions/ in the working tree differs from HEAD ({len(changed)} file"
                   f"{'s' if len(changed) != 1 else ''}, e.g. {changed[0][3:]}); this scores HEAD's committed "
                   "functions: commit them to score them", err=True)


async def _evaluate(ws: Workspace, rev: str, tasks: TaskSet, progress: bool,
                    as_json: bool) -> tuple[EvalResult, bool, Optional[Isolation]]:
    llm = ws.llm()
    try:
        ev = Evaluator(ws.root, ws.settings, llm, progress=ProgressLine() if progress else None,
                       on_isolation=None if as_json else announce_sandbox)
        result, reused = await ev.evaluate_or_reuse(rev, tasks)
        return result, reused, ev.isolation
    finally:
        await llm.aclose()
