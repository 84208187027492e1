"""`forgegit reviews`: a forgegit pull request's review feedback (line comments, reviews, comments), as the
optimizer would see it; `--pending` finds the open one with feedback newer than its last training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from .. import actions_env, git, reviews
from ..records import ReviewRound, to_json
from .pr import GitHubEnv


@click.command("reviews")
@click.argument("number", type=click.IntRange(1), required=False)
@click.option("--pending", is_flag=True,
              help="Find the open forgegit pull request with feedback newer than its last training.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the feedback as JSON here, for `forgegit train --from-pr N --reviews FILE`.")
@click.option("--remote", default="origin", show_default=True, help="Where to fetch the PR's branch and notes from.")
def command(number: Optional[int], pending: bool, out_path: Optional[str], remote: str) -> None:
    """Show pull request NUMBER's review feedback (or, with --pending, the PR that has new feedback)."""
    if (number is None) == (not pending):
        raise click.UsageError("give a pull request NUMBER or --pending (not both)")
    repo = git.toplevel(".")
    client = GitHubEnv.from_environ().client()
    found: Optional[ReviewRound]
    if pending:
        found = reviews.pending(client, repo, remote, echo=click.echo)
        if found is None:
            click.echo("no open forgegit pull request has review feedback newer than its last training")
            return
    else:
        assert number is not None
        found = reviews.read_round(client, number)
        reviews.fetch_run(repo, found.branch, remote)
    click.echo(f"pull request #{found.pr} ({found.branch}): {len(found.comments)} comment(s) to train on")
    for line in reviews.log_lines(found):
        click.echo(line)
    if out_path:
        Path(out_path).write_text(json.dumps(to_json(found)) + "\n")
        actions_env.set_outputs({"pr-number": str(found.pr), "feedback-file": out_path})
