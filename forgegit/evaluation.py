"""Evaluate the functions at a git revision on a task set: concurrently, recorded in git notes."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

from . import conversations, git, notes, safejson
from .agent import CUT_OFF, AgentContext, Toolbox, Trajectory, load_agent, run_agent
from .chat import Conversation
from .checkers import cut_off_verdict, get_checker
from .config import Settings
from .functions import FunctionFileError, load_specs
from .llm import LLM
from .records import EvalResult, TaskResult, Usage, parse, to_json
from .isolation import Isolation
from .sandbox import Limits, Sandbox
from .tasks import Task, TaskSet

class Progress(Protocol):
    """Told about one evaluation at a time: begin (with the tasks a checkpoint already holds), each
    finished task, end. So a progress line counts one evaluation, never several."""

    def begin(self, label: str, total: int, done: int) -> None: ...

    def __call__(self, done: int, total: int, result: "TaskResult") -> None: ...

    def end(self) -> None: ...


def trajectories_dir(repo: Path, key: str) -> Path:
    return git.state_dir(repo) / "trajectories" / key


def save_trajectory(directory: Path, task: Task, t: Trajectory, result: TaskResult) -> None:
    """Stage one task's conversation (compacted) until the evaluation stores them all in git."""
    conversations.stage(directory, {
        "task_id": task.id, "question": task.question,  # not the expected answer: the note has it
        "passed": result.passed, "feedback": result.feedback, "failure": result.failure,
        "stop": t.stop, "error": t.error, "answer": t.answer, "messages": t.messages,
        "usage": {"prompt_tokens": t.usage.prompt_tokens, "completion_tokens": t.usage.completion_tokens},
    })


def checkpoint_path(repo: Path, key: str) -> Path:
    """Where an evaluation in progress keeps its finished tasks (one JSON line each)."""
    return git.state_dir(repo) / "checkpoints" / f"{key}.jsonl"


def load_checkpoint(path: Path, tasks: TaskSet) -> dict[str, TaskResult]:
    """The finished task results an interrupted evaluation left at path, for tasks of this task set.
    A line that does not read as a task result (e.g. the one being written at a kill) is skipped."""
    wanted = {t.id for t in tasks.tasks}
    done: dict[str, TaskResult] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return done
    for line in lines:
        try:
            r = parse(TaskResult, safejson.loads(line))
        except ValueError:
            continue
        if r.task_id in wanted:
            done[r.task_id] = r
    return done


def load_trajectories(repo: Path, key: str) -> dict[str, Conversation]:
    """The staged messages of an evaluation's tasks on this machine, by task id (notes written before
    conversations were stored in git point here; {} when there are none)."""
    d = trajectories_dir(repo, key)
    out: dict[str, Conversation] = {}
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            try:
                data = safejson.loads(p.read_bytes(), max_depth=conversations.MAX_DEPTH,
                                      max_bytes=conversations.READ_BLOB_BYTES)
                out[str(data["task_id"])] = list(data.get("messages") or [])
            except (ValueError, KeyError, OSError, TypeError, AttributeError):
                continue
    return out


def conversations_of(repo: Path, result: EvalResult) -> dict[str, Conversation]:
    """The agent's messages on each task of result, by task id: from git (the tree its note names, if
    this clone has it), else what this machine staged for it."""
    ids = [r.task_id for r in result.results]
    if result.conversations:
        return conversations.load(repo, result.conversations, ids)
    return load_trajectories(repo, result.key)


def store_conversations(repo: Path, key: str, results: list[TaskResult], budget_kb: int) -> str:
    """Store the staged conversations of an evaluation in git (failed tasks first, within budget_kb KiB)
    and publish them under conversations.REF; the tree id for the note ("" when none was stored)."""
    tdir = trajectories_dir(repo, key)
    order = [r.task_id for r in results if not r.passed] + [r.task_id for r in results if r.passed]
    tree = conversations.store(repo, tdir, order, budget_kb * 1024)
    conversations.publish(repo, {key: tree})
    shutil.rmtree(tdir, ignore_errors=True)  # in git now (or over the budget: not kept, as documented)
    return tree


def _failure(t: Trajectory, passed: bool) -> Optional[str]:
    if passed:
        return None
    if t.stop in ("turn_limit", "llm_error", "timeout", "agent_error"):
        return t.stop
    return "wrong_answer" if (t.answer or "").strip() else "no_answer"


def sandbox_limits(settings: Settings) -> Limits:
    """The sandbox's limits from the settings (tool_timeout, memory_mb, max_output, disk_mb)."""
    s = settings
    return Limits(timeout=s.tool_timeout, memory_mb=s.memory_mb, max_output=s.max_output, disk_mb=s.disk_mb)


@dataclass
class Evaluator:
    """Evaluates revisions of one repository with one set of settings (shares the model client)."""

    repo: Path
    settings: Settings
    llm: LLM
    progress: Optional[Progress] = None
    on_isolation: Optional[Callable[[Isolation], None]] = None  # told once, when function code first runs
    isolation: Optional[Isolation] = None  # the level the sandbox reached (None until code ran)
    _fresh: dict[str, EvalResult] = field(default_factory=dict, repr=False)  # this run's own results

    def recorded(self, commit: str, tasks: TaskSet, key: Optional[str] = None) -> Optional[EvalResult]:
        """A result for this tree, task set and settings: made by this evaluator, or (unless
        --no-cache) found in the notes. It is copied onto commit's note."""
        key = key or notes.eval_key(git.functions_tree(self.repo, commit), tasks.sha256, self.settings)
        hit = self._fresh.get(key)
        if hit is None and self.settings.cache:
            hit = notes.find(self.repo, key, commit, [t.id for t in tasks.tasks])
        if hit is not None and hit.revision != commit:
            hit = dataclasses.replace(hit, revision=commit)
            notes.record(self.repo, commit, hit)
        return hit

    async def evaluate(self, rev: str, tasks: TaskSet, *, record: bool = True) -> EvalResult:
        return (await self.evaluate_or_reuse(rev, tasks, record=record))[0]

    async def evaluate_or_reuse(self, rev: str, tasks: TaskSet, *, record: bool = True) -> tuple[EvalResult, bool]:
        """(result, whether it was reused): a recorded result when there is one, else a fresh run."""
        commit = git.resolve(self.repo, rev)
        tree = git.functions_tree(self.repo, commit)
        key = notes.eval_key(tree, tasks.sha256, self.settings)
        hit = self.recorded(commit, tasks, key)
        if hit is not None and not self._timed_out_before(hit):
            return hit, True
        if hit is not None:  # run only the tasks a smaller `timeout` failed; the rest is reused
            ckpt = checkpoint_path(self.repo, key)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            ckpt.write_text("".join(json.dumps(to_json(r), sort_keys=True) + "\n"
                                    for r in hit.results if r.failure != "timeout"), encoding="utf-8")
        result = await self._run(commit, tree, key, tasks)
        self._fresh[key] = result
        if record:
            notes.record(self.repo, commit, result)
        checkpoint_path(self.repo, key).unlink(missing_ok=True)  # the note (or this evaluator) has it all now
        return result, False

    def _timed_out_before(self, hit: EvalResult) -> bool:
        """Whether some task of a recorded result timed out under a smaller `timeout` than this one's."""
        before = hit.settings.get("timeout")
        smaller = not isinstance(before, (int, float)) or isinstance(before, bool) or before < self.settings.timeout
        return smaller and any(r.failure == "timeout" for r in hit.results)

    async def _run(self, commit: str, tree: str, key: str, tasks: TaskSet) -> EvalResult:
        s = self.settings
        files = git.read_functions(self.repo, commit)
        specs, problems = load_specs(files)
        if problems:
            listing = "; ".join(str(p) for p in problems[:3])
            raise FunctionFileError(problems, f"functions at {commit[:12]} do not pass `forgegit check`: {listing}")
        checker = get_checker(s.checker, self.repo)
        agent = load_agent(s.agent, self.repo)
        tdir = trajectories_dir(self.repo, key)
        limits = sandbox_limits(s)
        sem = asyncio.Semaphore(s.concurrency)
        # Tasks an interrupted evaluation of the same key finished are not run again (unless --no-cache).
        ckpt = checkpoint_path(self.repo, key)
        results: dict[str, TaskResult] = load_checkpoint(ckpt, tasks) if s.cache else {}
        usage = Usage()
        for done in results.values():
            usage.add(done.usage)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        sandbox = Sandbox(files, limits, workers=max(1, min(s.concurrency, 4)), allow_unsafe=s.sandbox == "unsafe",
                          protect=[str(self.repo)])
        async with sandbox:
            if self.isolation is None and sandbox.isolation is not None:
                self.isolation = sandbox.isolation
                if self.on_isolation:
                    self.on_isolation(sandbox.isolation)
            toolbox = Toolbox(specs, sandbox, python_tool=s.python_tool)
            schemas = toolbox.schemas()

            async def one(task: Task) -> None:
                async with sem:
                    ctx = AgentContext(schemas, toolbox, self.llm, s)
                    t = await run_agent(agent, task, ctx)
                verdict = None
                if t.stop == "answer":  # a cut-off reply is not judged by the number the cut left last
                    verdict = (cut_off_verdict(s.checker, t.answer or "") if t.error == CUT_OFF else None) \
                        or checker(t.answer or "", task)
                passed = bool(verdict and verdict.passed)
                feedback = verdict.feedback if verdict else (t.error or t.stop)
                if verdict and t.error:
                    feedback = f"{feedback}; {t.error}"
                r = TaskResult(
                    task.id, passed, (t.answer or "")[-2000:], task.answer, feedback, _failure(t, passed),
                    t.tool_calls, t.tool_errors, t.turns, t.usage, dict(task.fields),
                )
                save_trajectory(tdir, task, t, r)
                results[task.id] = r
                ckpt_file.write(json.dumps(to_json(r), sort_keys=True) + "\n")
                ckpt_file.flush()
                usage.add(t.usage)
                if self.progress:
                    self.progress(len(results), len(tasks), r)

            ckpt_file = open(ckpt, "a", encoding="utf-8")
            jobs = [asyncio.ensure_future(one(t)) for t in tasks.tasks if t.id not in results]
            if self.progress:
                self.progress.begin(f"{commit[:7]} on {tasks.path}", len(tasks), len(results))
            try:
                await asyncio.gather(*jobs)
            except BaseException:
                for j in jobs:
                    j.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
                raise
            finally:
                ckpt_file.close()
                if self.progress:
                    self.progress.end()
        ordered = [results[t.id] for t in tasks.tasks]
        return EvalResult(
            key=key, revision=commit, tree=tree, tasks_file=tasks.path, tasks_hash=tasks.sha256,
            model=s.model, passed=sum(r.passed for r in ordered), total=len(ordered), usage=usage,
            results=ordered, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            # timeout is not in the key; it is kept so that a larger one runs the tasks it failed again
            settings={**{k: getattr(s, k) for k in notes.KEY_SETTINGS}, "timeout": s.timeout},
            conversations=store_conversations(self.repo, key, ordered, s.conversation_kb),
        )


def breakdown(result: EvalResult, field_name: str) -> list[tuple[str, int, int]]:
    """Scores grouped by a task field (e.g. subject): [(value, passed, total)]."""
    groups: dict[str, list[int]] = {}
    for r in result.results:
        value = r.task_id if field_name == "id" else str(r.fields.get(field_name, "(none)"))
        g = groups.setdefault(value, [0, 0])
        g[0] += int(r.passed)
        g[1] += 1
    return sorted((k, v[0], v[1]) for k, v in groups.items())
