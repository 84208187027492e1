"""`forgegit check [PATHS...]`: validate function files without running them."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ForgegitError
from ..functions import Problem, check_paths, expand_paths
from ..git import FUNCTIONS_DIR, toplevel
from ..workflow_commands import annotation, safe_text


def default_paths() -> list[str]:
    """`functions/` of the repository around the current directory."""
    directory = toplevel(".") / FUNCTIONS_DIR
    if not directory.is_dir():
        raise ForgegitError(f"{_display(directory)}: no functions/ directory (run `forgegit init`)")
    return [_display(directory)]


def _display(path: Path) -> str:
    """path relative to the current directory when it is below it (as GitHub annotations want)."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else Path(rel).as_posix()


def render(problem: Problem, fmt: str) -> str:
    """One line per problem; a file name or code excerpt cannot print a workflow command (`::error ...`)."""
    if fmt == "github":
        return annotation("error", problem.message, file=problem.path, line=problem.line)
    return safe_text(str(problem))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@click.command(name="check")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=True, file_okay=True))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "github"]), default="text", show_default=True,
    help="text: `path:line: message`; github: GitHub Actions error annotations.",
)
def command(paths: tuple[str, ...], fmt: str) -> None:
    """Validate function files without running them (default: the repository's functions/*.py).

    A directory means its *.py files. Exits 1 if any file breaks a rule.
    """
    targets = list(paths) or default_paths()
    problems = check_paths(targets)
    for problem in problems:
        click.echo(render(problem, fmt))
    files = expand_paths(targets)
    if problems:
        bad = len({p.path for p in problems})
        click.echo(f"forgegit check: {_plural(len(problems), 'problem')} in {bad} of {_plural(len(files), 'file')}", err=True)
        raise SystemExit(1)
    click.echo(f"{_plural(len(files), 'file')} OK")
