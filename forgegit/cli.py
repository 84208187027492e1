"""The `forgegit` command line: a thin click layer over the library.

Each subcommand lives in `forgegit/commands/<name>.py` and is imported only when used.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

import click

from . import __version__
from .errors import ForgegitError
from .workflow_commands import safe_text

COMMANDS = {
    "init": "Scaffold forgegit.toml, functions/ and an example task file.",
    "check": "Validate function files without running them.",
    "eval": "Evaluate the functions at a git revision on a task set.",
    "train": "Train the functions: optimizer epochs as commits on a training branch.",
    "log": "Show a training run's learning curve from the git notes.",
    "pr": "Push the training branch and open or update its pull request.",
    "reviews": "Show a forgegit pull request's review feedback (or find one with new feedback).",
    "demo": "Run a complete offline training against a scripted model.",
    "cache": "Inspect or clear the model-response cache.",
    "push": "Push the recorded results (notes) and agent conversations to a remote.",
    "fetch": "Fetch other clones' recorded results and agent conversations from a remote.",
    "gc": "Prune stored agent conversations no note refers to (or older ones).",
    "serve": "Serve the functions of a revision as an MCP server (stdio, or --http).",
}


class LazyGroup(click.Group):
    """Imports `forgegit.commands.<name>` only when that command runs (fast start-up)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"forgegit.commands.{name}")
        cmd: click.Command = getattr(module, "command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="forgegit")
def cli() -> None:
    """Train an LLM agent's functions (its tools) on git."""


def _annotate(exc: ForgegitError) -> None:
    """In GitHub Actions, function-file problems also become workflow annotations on the files."""
    problems = getattr(exc, "problems", None)
    if not problems or os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from .workflow_commands import annotation
    for p in problems:
        click.echo(annotation("error", p.message, file=p.path, line=p.line))


def _command_path(exc: click.UsageError, argv: Optional[list[str]]) -> str:
    """`forgegit eval` for a usage mistake in eval's options (click does not always say which command)."""
    if exc.ctx is not None and exc.ctx.command_path:
        return exc.ctx.command_path
    args = sys.argv[1:] if argv is None else argv
    name = next((a for a in args if not a.startswith("-")), "")
    return f"forgegit {name}" if name in COMMANDS else "forgegit"


# click >= 8.2 raises this for a bare `forgegit`; earlier versions print the help themselves.
_NO_ARGS_IS_HELP: type[click.UsageError] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: Optional[list[str]] = None) -> object:
    """Entry point: ForgegitError becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        return cli.main(args=argv, prog_name="forgegit", standalone_mode=False)
    except ForgegitError as exc:
        _annotate(exc)
        click.echo(f"forgegit: error: {safe_text(exc)}", err=True)  # one line, no workflow command
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("forgegit: aborted", err=True)
        sys.exit(130)
    except _NO_ARGS_IS_HELP as exc:  # bare `forgegit`: the help, as click shows it
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # the same one-line style as every other error, with where to look
        hint = f" (see `{_command_path(exc, argv)} --help`)"
        click.echo(f"forgegit: error: {safe_text(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"forgegit: error: {safe_text(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("forgegit: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
