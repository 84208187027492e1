"""The trained functions of one revision, as tools to use anywhere: OpenAI tool schemas and sandboxed calls.

    async with Toolbox.open(".", "v3") as tools:      # read from git, checked, workers started
        tools.schemas()                                # OpenAI `tools=[...]` entries
        outcome = await tools.call("calculate", {"expression": "2 * 21"})
        outcome.ok, outcome.output                     # True, '42.0'

The functions are read from git at the revision (the working tree is not touched) and must pass
`forgegit check`. Calls run in the sandbox (`sandbox.py`) with the settings' limits, at the
isolation level it reaches: below secrets-safe it refuses to start unless `sandbox = "unsafe"`.
`revision` says what is served and the scores recorded for it in the git notes. The MCP server
(`mcp_server.py`) and the OpenAI Agents SDK adapter (`adapters/openai_agents.py`) sit on top.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from . import git, notes
from .agent import Toolbox as AgentToolbox
from .agent import _omittable_without_default
from .chat import ToolSchema
from .config import Settings
from .errors import ForgegitError
from .evaluation import sandbox_limits
from .functions import FunctionFileError, FunctionSpec, load_specs
from .isolation import Isolation
from .records import EvalResult
from .sandbox import Sandbox, ToolOutcome
from .workflow_commands import safe_text


@dataclass
class RecordedScore:
    """One evaluation recorded in the git notes for the served functions/ tree."""

    tasks_file: str
    model: str
    passed: int
    total: int
    created: str
    recorded_on: str  # the commit whose note holds it (the served one, or another with the same functions)

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def line(self) -> str:
        """'tasks/val.jsonl with gpt-4o-mini: 42/50 (0.840), 2026-01-05T10:00:00+00:00'."""
        when = f", {self.created}" if self.created else ""
        return f"{self.tasks_file} with {self.model}: {self.passed}/{self.total} ({self.score:.3f}){when}"

    def to_json(self) -> dict[str, Any]:
        return {"tasks_file": self.tasks_file, "model": self.model, "passed": self.passed, "total": self.total,
                "score": self.score, "created": self.created, "recorded_on": self.recorded_on}


@dataclass
class Revision:
    """What is served: the revision asked for, its commit, tags, functions/ tree and recorded scores."""

    rev: str
    commit: str
    tree: str
    tags: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    scores: list[RecordedScore] = field(default_factory=list)

    def describe(self) -> str:
        """'v3 (commit 0123456789ab, tags v3)'."""
        tags = f", tags {', '.join(self.tags)}" if self.tags else ""
        return f"{self.rev} (commit {self.commit[:12]}{tags})"

    def to_json(self) -> dict[str, Any]:
        return {"rev": self.rev, "commit": self.commit, "tree": self.tree, "tags": self.tags,
                "functions": self.functions, "scores": [s.to_json() for s in self.scores]}


def recorded_scores(repo: Path, commit: str, tree: str) -> list[RecordedScore]:
    """Every evaluation in the notes of this functions/ tree: the commit's own note first, then notes on
    other commits with the same functions (a tag on a merge commit finds its training branch's scores).

    Notes are untrusted (anyone who can push them wrote them): an evaluation whose counts disagree with
    its task results is left out, and its texts are made one short line before they reach a client."""
    by_commit = notes.all_notes(repo)
    ordered = [(commit, by_commit.get(commit, {}))] + [(c, n) for c, n in by_commit.items() if c != commit]
    seen: set[str] = set()
    out: list[RecordedScore] = []
    for on, note in ordered:
        evals = note.get("evals") if isinstance(note, dict) else None
        if not isinstance(evals, dict):
            continue
        for key, data in evals.items():
            if key in seen or not isinstance(data, dict) or data.get("tree") != tree:
                continue
            try:
                r = EvalResult.from_json(data)
                consistent = r.total == len(r.results) and r.passed == sum(bool(t.passed) for t in r.results)
            except (TypeError, KeyError, ValueError, AttributeError):
                continue
            if not consistent or not isinstance(r.passed, int) or not isinstance(r.total, int):
                continue
            seen.add(key)
            out.append(RecordedScore(safe_text(r.tasks_file, 200), safe_text(r.model, 100), r.passed, r.total,
                                     safe_text(r.created, 40), on))
    out.sort(key=lambda s: (s.recorded_on != commit, s.tasks_file, s.model, s.created))
    return out


def read_revision(repo: Path, rev: str) -> tuple[Revision, dict[str, bytes], list[FunctionSpec]]:
    """The revision's description, function files and specs; ForgegitError (one line) for an unknown
    revision or functions that fail `forgegit check`."""
    commit = git.resolve(repo, rev)
    files = git.read_functions(repo, commit)
    specs, problems = load_specs(files)
    if problems:
        listing = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise FunctionFileError(problems,
                                f"functions at {rev} ({commit[:12]}) do not pass `forgegit check`: {listing}{more}")
    tree = git.functions_tree(repo, commit)
    tags = git.out(["tag", "--points-at", commit], repo).split()
    revision = Revision(rev, commit, tree, tags, [s.name for s in specs], recorded_scores(repo, commit, tree))
    return revision, files, specs


class Toolbox:
    """The functions at one revision as tools: `schemas()` for a model, `await call(name, args)` in the sandbox.

    Use it as an async context manager (`async with Toolbox.open(...) as tools:`), or `await start()`
    and `await close()`; closing stops the sandbox workers.
    """

    def __init__(self, repo: Path, revision: Revision, files: dict[str, bytes], specs: list[FunctionSpec],
                 settings: Settings, *, workers: int = 2, python_tool: bool = False) -> None:
        self.repo = repo
        self.revision = revision
        self.specs = specs
        self.settings = settings
        self.sandbox = Sandbox(files, sandbox_limits(settings), workers=workers,
                               allow_unsafe=settings.sandbox == "unsafe", protect=[str(repo)])
        self._tools = AgentToolbox(specs, self.sandbox, python_tool=python_tool)  # the schemas the agent trained with
        self._omittable = {s.name: _omittable_without_default(s.parameters) for s in specs}

    @classmethod
    def open(cls, repo: Union[str, Path] = ".", rev: str = "HEAD", settings: Optional[Settings] = None, *,
             workers: int = 2, python_tool: bool = False) -> "Toolbox":
        """The functions of rev (branch, tag or commit) in the repository containing repo, read from git.

        settings: limits and the `sandbox` rule (default: the repository's forgegit.toml, as `forgegit eval`
        reads it). python_tool: also offer the agent's `python` tool (code with every function importable,
        in the same sandbox). Workers start on `start()` / `async with`."""
        if settings is None:
            from .workspace import Workspace
            settings = Workspace.open(repo).settings
        root = git.toplevel(repo)
        revision, files, specs = read_revision(root, rev)
        if not specs and not python_tool:
            raise ForgegitError(f"there are no functions to serve at {rev} ({revision.commit[:12]}): "
                                f"functions/ is empty or missing")
        return cls(root, revision, files, specs, settings, workers=workers, python_tool=python_tool)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> "Toolbox":
        """Start the workers; SandboxRefused (one line) below secrets-safe unless settings say unsafe."""
        await self.sandbox.start()
        return self

    async def close(self) -> None:
        await self.sandbox.close()

    async def __aenter__(self) -> "Toolbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def isolation(self) -> Optional[Isolation]:
        """The level the sandbox reached (None before it started)."""
        return self.sandbox.isolation

    @property
    def import_errors(self) -> dict[str, str]:
        """{file: error} for function files that failed to import when the workers started (their calls fail)."""
        return dict(self.sandbox.import_errors)

    # ------------------------------------------------------------ the tools

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.schemas()]

    def schemas(self) -> list[ToolSchema]:
        """The OpenAI `tools=[...]` entries: {"type": "function", "function": {name, description, parameters}}."""
        return self._tools.schemas()

    def schema(self, name: str) -> Optional[dict[str, Any]]:
        for tool in self.schemas():
            if tool["function"]["name"] == name:
                return tool
        return None

    async def call(self, name: str, arguments: Union[str, dict[str, Any], None] = None) -> ToolOutcome:
        """Run one tool call in the sandbox. Arguments are a dict or a JSON string (as a model sends them).
        Every failure (bad arguments, unknown tool, exception, timeout, memory, crash) is a
        ToolOutcome(ok=False) whose output says what happened; nothing raises."""
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError as exc:
                return ToolOutcome(False, f"the arguments are not valid JSON ({exc.args[0]})", "bad_arguments")
        if not isinstance(arguments, dict):
            return ToolOutcome(False, "the arguments must be a JSON object", "bad_arguments")
        if name == "python" and self._tools.python_tool:
            return await self.sandbox.run_python(str(arguments.get("code", "")))
        if name not in self._omittable:
            known = ", ".join(self.names) or "none"
            return ToolOutcome(False, f"there is no function {name!r} (available: {known})", "unknown_function")
        # `x: Optional[int]` with no default is optional in the schema: a model may leave it out (as in agent.py).
        filled = {p: None for p in self._omittable[name] if p not in arguments}
        return await self.sandbox.call(name, {**arguments, **filled})

    async def run(self, name: str, arguments: Union[str, dict[str, Any], None] = None) -> str:
        """The text a model should see: the output, or `Error: ...` (as forgegit's own agent shows it)."""
        outcome = await self.call(name, arguments)
        return outcome.output if outcome.ok else f"Error: {outcome.output}"
