"""Options shared by the commands that run the agent (eval, train)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

from ..workspace import Workspace

F = Callable[..., Any]


def agent_options(f: F) -> F:
    """--config, --model, --concurrency, --timeout, --checker, field mapping, --no-cache and --unsafe-sandbox; builds `ws: Workspace`."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False), help="forgegit.toml to use (default: the nearest one)."),
        click.option("--model", help="Model the agent uses (overrides forgegit.toml)."),
        click.option("--concurrency", type=click.IntRange(1, 1024), help="Most tasks run at once."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                     help="Seconds one model request may take (a task whose request times out fails; the run goes on)."),
        click.option("--checker", help="Answer checker: default, exact, numeric, contains, math, gsm8k or module:function."),
        click.option("--question-field", help="Task field holding the question."),
        click.option("--answer-field", help="Task field holding the expected answer."),
        click.option("--no-cache", "no_cache", is_flag=True, help="Reuse no recorded result and no cached model response."),
        click.option("--unsafe-sandbox", "unsafe_sandbox", is_flag=True,
                     help="Run function code even where the sandbox cannot reach the secrets-safe level."),
    ]

    @functools.wraps(f)
    def wrapper(config: str | None, model: str | None, concurrency: int | None, timeout: float | None,
                checker: str | None,
                question_field: str | None, answer_field: str | None, no_cache: bool, unsafe_sandbox: bool,
                **kw: Any) -> Any:
        ws = Workspace.open(".", config, model=model, concurrency=concurrency, timeout=timeout, checker=checker,
                            question_field=question_field, answer_field=answer_field,
                            cache=False if no_cache else None, sandbox="unsafe" if unsafe_sandbox else None)
        return f(ws=ws, **kw)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
