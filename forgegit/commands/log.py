"""`forgegit log`: a training run's learning curve, read from the git notes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from .. import evalstore, git, history
from ..errors import ForgegitError
from ..evaluation import breakdown
from ..records import EvalResult, RunRecord, to_json
from ..workflow_commands import safe_text


def recorded_eval(repo: Path, commit: str, tasks_file: str) -> Optional[EvalResult]:
    """The newest evaluation of commit on tasks_file found in its note."""
    evals = evalstore.read_note(repo, commit).get("evals", {})
    matches = [EvalResult.from_json(e) for e in evals.values() if e.get("tasks_file") == tasks_file]
    return max(matches, key=lambda e: (e.total, e.created)) if matches else None


@click.command("log")
@click.argument("branch", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw the learning curve to FILE.png or FILE.svg.")
@click.option("--by", "by_field", help="Break base and trained scores down by a task field (e.g. subject).")
@click.option("--all", "all_runs", is_flag=True, help="List every training run.")
def command(branch: Optional[str], as_json: bool, plot_path: Optional[str], by_field: Optional[str], all_runs: bool) -> None:
    """Show the learning curve of a training run (default: the latest)."""
    repo = git.toplevel(".")
    if all_runs:
        for b in history.run_branches(repo):
            r = history.load_run(repo, b)
            g = r.final_gate
            val = f"  val {g.base_score:.3f} -> {g.head_score:.3f}" if g else ""
            click.echo(f"{b}  {r.status}  {len(r.epochs)} epochs  baseline {r.baseline_score:.3f}{val}")
        return
    branch = branch or history.latest_run_branch(repo)
    if not branch:
        raise ForgegitError("no training run yet: run `forgegit train` (or `forgegit demo`)")
    if not branch.startswith(history.BRANCH_PREFIX):
        branch = history.BRANCH_PREFIX + branch
    run = history.load_run(repo, branch)
    if as_json:
        click.echo(json.dumps(to_json(run)))
        return
    from ..report import plot, summary_table
    click.echo(f"run {run.run_id}: {run.branch} from {run.base_branch} ({run.base_commit[:12]}), model {run.model}, status {run.status}")
    click.echo(summary_table(run))
    if run.sandbox:  # from a note: defused like any text others can push
        click.echo(f"sandbox: {safe_text(run.sandbox, 300)}")
    for label, c in (("validation", run.final_gate), ("sealed test", run.test)):
        if c is not None:
            ci = f" [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" if c.ci_low is not None and c.ci_high is not None else ""
            click.echo(f"{label} ({c.tasks_file}): base {c.base_score:.3f} -> trained {c.head_score:.3f}, "
                       f"delta {c.delta:+.3f}{ci}, +{len(c.flipped_up)}/-{len(c.flipped_down)} tasks")
    if by_field:
        _by(repo, run, by_field)
    if plot_path:
        click.echo(f"wrote {plot(run, plot_path)}")


def _by(repo: Path, run: RunRecord, field_name: str) -> None:
    base = recorded_eval(repo, run.base_commit, run.tasks_file)
    head = recorded_eval(repo, run.trained_commit, run.tasks_file)
    if base is None or head is None:
        click.echo(f"by {field_name}: no recorded evaluation of {run.tasks_file} for both base and trained")
        return
    trained = {v: (p, t) for v, p, t in breakdown(head, field_name)}
    click.echo(f"by {field_name} on {run.tasks_file}:")
    for value, p, t in breakdown(base, field_name):
        hp, ht = trained.get(value, (0, t))
        click.echo(f"  {value:<30} base {p:>4}/{t:<4} trained {hp:>4}/{ht:<4}")
