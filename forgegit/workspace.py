"""A repository opened for work: its root, settings, task sets and model clients."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import git
from .cache import ResponseCache
from .config import CONFIG_FILE, Settings, load_settings, validate
from .llm import LLM, Endpoint
from .tasks import TaskSet, load_tasks


def find_config(start: Path, top: Path) -> Optional[Path]:
    """The nearest forgegit.toml from start up to the repository root."""
    d = start.resolve()
    top = top.resolve()
    while True:
        if (d / CONFIG_FILE).is_file():
            return d / CONFIG_FILE
        if d == top or d.parent == d:
            return None
        d = d.parent


@dataclass
class Workspace:
    root: Path  # repository top level
    config_dir: Path  # task paths in forgegit.toml are relative to this
    settings: Settings

    @classmethod
    def open(cls, cwd: str | Path = ".", config: Optional[str] = None, **overrides: object) -> "Workspace":
        cwd = Path(cwd).resolve()
        root = git.toplevel(cwd)
        path = Path(config).resolve() if config else find_config(cwd, root)
        settings = load_settings(root, path) if path else Settings()
        settings = settings.with_overrides(**overrides)
        validate(settings, "command line")
        return cls(root, path.parent if path else cwd, settings)

    def resolve_path(self, path: str, from_cli: bool = False) -> Path:
        p = Path(path)
        if p.is_absolute():
            return p
        return (Path.cwd() / p) if from_cli else (self.config_dir / p)

    def display_path(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    def task_set(self, path: str, from_cli: bool = False) -> TaskSet:
        p = self.resolve_path(path, from_cli)
        ts = load_tasks(p, self.settings.question_field, self.settings.answer_field)
        return TaskSet(self.display_path(p), ts.sha256, ts.tasks)

    def cache(self) -> ResponseCache:
        return ResponseCache(git.state_dir(self.root) / "cache.sqlite")

    def llm(self, model: Optional[str] = None, *, optimizer: bool = False) -> LLM:
        """A client for model (default: the agent's), cached and logged, slowing down on 429s and on
        latency that grows with concurrency; optimizer=True uses the optimizer's max_tokens."""
        from .ratelimit import AdaptiveLimiter
        s = self.settings
        return LLM(
            model or (s.effective_optimizer_model if optimizer else s.model), endpoint=Endpoint.from_env(),
            cache=self.cache(), use_cache=s.cache, prices=s.prices, limiter=AdaptiveLimiter(s.concurrency),
            max_tokens=s.optimizer_max_tokens if optimizer else s.max_tokens, timeout=s.timeout,
            tool_choice=s.tool_choice, context_window=s.context_window, role="optimizer" if optimizer else "agent",
            on_retry=retry_notice,
        )


def retry_notice(line: str) -> None:
    """A retry, said on stderr as one line: `forgegit: retrying in 4s: connection refused (...)`."""
    import sys
    print(f"forgegit: {line}", file=sys.stderr, flush=True)


def is_terminal() -> bool:
    return os.isatty(2) and os.environ.get("CI") != "true"
