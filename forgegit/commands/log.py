"""`forgegit log`: a training run's learning curve, read from the git notes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from .. import git, history, notes
from ..cost import reprice
from ..errors import ForgegitError
from ..evaluation import breakdown
from ..records import EvalResult, RunRecord, to_json
from ..workflow_commands import safe_text
from ..workspace import Workspace


def recorded_eval(repo: Path, commit: str, tasks_file: str) -> Optional[EvalResult]:
    """The newest evaluation of commit on tasks_file found in its note."""
    evals = notes.read_note(repo, commit).get("evals", {})
    matches = [EvalResult.from_json(e) for e in evals.values() if e.get("tasks_file") == tasks_file]
    return max(matches, key=lambda e: (e.total, e.created)) if matches else None


def _plot_file(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """Refuse a --plot file name matplotlib would not write, before anything is printed."""
    from ..report import PLOT_SUFFIXES
    if value is not None and Path(value).suffix.lower() not in PLOT_SUFFIXES:
        raise click.BadParameter(f"cannot plot to {Path(value).name}: use a .png or .svg file name")
    return value


@click.command("log")
@click.argument("branch", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON (with --all: a list of runs).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), callback=_plot_file,
              help="Draw the learning curve to FILE.png or FILE.svg.")
@click.option("--by", "by_field", help="Break base and trained scores down by a task field (e.g. subject).")
@click.option("--all", "all_runs", is_flag=True, help="List every training run.")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="forgegit.toml whose [prices] cost the recorded tokens (default: the nearest one).")
def command(branch: Optional[str], as_json: bool, plot_path: Optional[str], by_field: Optional[str], all_runs: bool,
            config: Optional[str]) -> None:
    """Show the learning curve of a training run (default: the latest)."""
    repo = git.toplevel(".")
    prices = Workspace.open(".", config).settings.prices
    if all_runs:
        runs = [reprice(history.load_run(repo, b), prices) for b in history.run_branches(repo)]
        if as_json:
            click.echo(json.dumps([to_json(r) for r in runs]))
            return
        for r in runs:
            g = r.final_gate
            val = f"  val {g.base_score:.3f} -> {g.head_score:.3f}" if g else ""
            click.echo(f"{r.branch}  {r.status}  {len(r.epochs)} epochs  baseline {r.baseline_score:.3f}"
                       f"  trained {r.trained_score:.3f}{val}")
        return
    branch = branch or history.latest_run_branch(repo)
    if not branch:
        raise ForgegitError("no training run yet: run `forgegit train` (or `forgegit demo`)")
    if not branch.startswith(history.BRANCH_PREFIX):
        branch = history.BRANCH_PREFIX + branch
    run = reprice(history.load_run(repo, branch), prices)
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
    if run.final_gate is not None and run.val_file == run.tasks_file:
        click.echo("note: validation is the training set: the gate measured fit, not generalization")
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
    if field_name != "id" and not any(field_name in r.fields for r in base.results):
        raise ForgegitError(f"--by {field_name}: no task in {run.tasks_file} has a field {field_name!r}")
    trained = {v: (p, t) for v, p, t in breakdown(head, field_name)}
    click.echo(f"by {field_name} on {run.tasks_file}:")
    for value, p, t in breakdown(base, field_name):
        hp, ht = trained.get(value, (0, t))
        click.echo(f"  {value:<30} base {p:>4}/{t:<4} trained {hp:>4}/{ht:<4}")
