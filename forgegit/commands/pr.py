"""`forgegit pr`: push a training branch and open or update its pull request."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from .. import actions_env, git, report
from ..cost import reprice
from ..errors import ForgegitError
from ..github import (
    DEFAULT_API_URL, TRAIN_PREFIX, GitHubClient, check_training_branch, open_or_update_pr, server_url_for,
)
from ..records import RunRecord
from ..workflow_commands import annotation, safe_lines
from ..workspace import Workspace


@dataclass
class GitHubEnv:
    """The GitHub settings `forgegit pr` reads from the environment (as Actions sets them)."""

    api_url: str
    server_url: str
    repository: Optional[str]
    token: Optional[str]

    @classmethod
    def from_environ(cls) -> "GitHubEnv":
        api = os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
        return cls(
            api_url=api,
            server_url=os.environ.get("GITHUB_SERVER_URL") or server_url_for(api),
            repository=os.environ.get("GITHUB_REPOSITORY") or None,
            token=os.environ.get("GITHUB_TOKEN") or None,
        )

    def client(self) -> GitHubClient:
        """The API client, or one error line naming every missing variable."""
        missing = [n for n, v in (("GITHUB_REPOSITORY", self.repository), ("GITHUB_TOKEN", self.token)) if not v]
        if missing:
            raise ForgegitError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: export "
                "GITHUB_REPOSITORY=owner/name and GITHUB_TOKEN=<token with contents and pull-requests write> "
                "(the forgegit action sets both), or use --dry-run")
        return GitHubClient(self.api_url, self.repository or "", self.token or "")


def split_labels(labels: tuple[str, ...]) -> list[str]:
    """Labels from repeated and comma-separated --label values, forgegit's own first, no duplicates."""
    out = ["forgegit"]
    for value in labels:
        for label in value.split(","):
            label = label.strip()
            if label and label not in out:
                out.append(label)
    return out


def score_outputs(run: RunRecord) -> dict[str, str]:
    """score / baseline-score: on validation when there is a final gate, else on the training set."""
    g = run.final_gate
    score, baseline = (g.head_score, g.base_score) if g else (run.trained_score, run.baseline_score)
    return {"score": f"{score:.4f}", "baseline-score": f"{baseline:.4f}", "branch": run.branch}


def find_branch(repo: Path, branch: Optional[str]) -> str:
    """The named training branch (a bare run id works too), else the latest run's; never another branch."""
    from .. import history

    if branch and not branch.startswith(TRAIN_PREFIX) and git.branch_exists(repo, TRAIN_PREFIX + branch):
        branch = TRAIN_PREFIX + branch
    branch = branch or history.latest_run_branch(repo)
    if not branch:
        raise ForgegitError("no training run found: run `forgegit train` first, or name the branch")
    check_training_branch(branch)
    return branch


@click.command("pr")
@click.argument("branch", required=False)
@click.option("--draft", is_flag=True, help="Open the pull request as a draft.")
@click.option("--label", "labels", multiple=True, metavar="L",
              help="Extra label (repeatable or comma-separated); 'forgegit' is always added.")
@click.option("--remote", default="origin", show_default=True, help="The git remote to push to.")
@click.option("--dry-run", is_flag=True, help="Print the pull request body; push and call nothing.")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="forgegit.toml whose [prices] cost the recorded tokens (default: the nearest one).")
def command(branch: Optional[str], draft: bool, labels: tuple[str, ...], remote: str, dry_run: bool,
            config: Optional[str]) -> int:
    """Push the training branch and open or update its pull request."""
    from .. import history

    repo = git.toplevel(".")
    prices = Workspace.open(".", config).settings.prices
    branch = find_branch(repo, branch)
    run = reprice(history.load_run(repo, branch), prices)
    env = GitHubEnv.from_environ()
    body = report.render_markdown(run, server_url=env.server_url if env.repository else None,
                                  repository=env.repository)
    if dry_run:
        click.echo(safe_lines(body), nl=False)  # model text in it never starts a workflow command
        plan = f"push {run.branch} and open or update its PR" if run.improved else "open nothing: no improvement"
        click.echo(f"(dry run: would {plan})", err=True)
        return 0
    client = env.client()
    actions_env.append_summary(body)
    actions_env.set_outputs(score_outputs(run))
    try:
        result = open_or_update_pr(repo, run, client=client, remote=remote, draft=draft,
                                   labels=split_labels(labels), server_url=env.server_url, body=body)
    except ForgegitError as exc:
        if actions_env.in_actions():
            click.echo(annotation("error", exc.message, title="forgegit pr"))
        raise
    for warning in result.warnings:
        click.echo(annotation("warning", warning) if actions_env.in_actions() else f"forgegit: warning: {warning}",
                   err=not actions_env.in_actions())
    if result.action == "none" and actions_env.in_actions():
        click.echo(annotation("notice", result.message, title="forgegit pr"))
    else:
        click.echo(result.message)
    for number in result.superseded:
        click.echo(f"closed #{number}: superseded by #{result.number}")
    actions_env.set_outputs({"pr-url": result.url or "", "pr-number": result.number or ""})
    return 0

