"""Options shared by the commands that run the agent (eval, train)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

from ..workspace import Workspace

F = Callable[..., Any]


def agent_options(f: F) -> F:
    """--config, --model, --concurrency, --checker, field mapping and --no-cache; builds `ws: Workspace`."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False), help="forgegit.toml to use (default: the nearest one)."),
        click.option("--model", help="Model the agent uses (overrides forgegit.toml)."),
        click.option("--concurrency", type=click.IntRange(1, 1024), help="Most tasks run at once."),
        click.option("--checker", help="Answer checker: default, exact, numeric, contains, math, gsm8k or module:function."),
        click.option("--question-field", help="Task field holding the question."),
        click.option("--answer-field", help="Task field holding the expected answer."),
        click.option("--no-cache", "no_cache", is_flag=True, help="Reuse no recorded result and no cached model response."),
    ]

    @functools.wraps(f)
    def wrapper(config: str | None, model: str | None, concurrency: int | None, checker: str | None,
                question_field: str | None, answer_field: str | None, no_cache: bool, **kw: Any) -> Any:
        ws = Workspace.open(".", config, model=model, concurrency=concurrency, checker=checker,
                            question_field=question_field, answer_field=answer_field,
                            cache=False if no_cache else None)
        return f(ws=ws, **kw)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
