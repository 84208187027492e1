"""`forgegit gc`: prune the stored agent conversations of evaluations no note refers to, or older ones."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .. import conversations, git, notes
from ..errors import ForgegitError
from .cache import human_size


def referenced(root: Path) -> dict[str, str]:
    """{evaluation key: when it was created} for every evaluation recorded in the notes."""
    out: dict[str, str] = {}
    for note in notes.all_notes(root).values():
        for key, data in (note.get("evals") or {}).items():
            created = str(data.get("created") or "") if isinstance(data, dict) else ""
            out[str(key)] = max(out.get(str(key), ""), created)
    return out


@click.command("gc")
@click.option("--older-than", "days", type=click.FloatRange(0), help="Also drop conversations of evaluations "
              "created more than this many days ago (default: keep every one a note refers to).")
@click.option("--remote", help="Also prune the remote's copy: merge it in first, then push the pruned ref.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
def command(days: Optional[float], remote: Optional[str], dry_run: bool) -> None:
    """Prune stored agent conversations (refs/forgegit/conversations)."""
    root = git.toplevel(".")
    if remote and not dry_run:
        conversations.fetch(root, remote)
    report = conversations.prune(root, referenced(root), older_than_days=days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} the conversations of {report.removed} evaluations ({human_size(report.removed_bytes)}); "
               f"kept {report.kept} ({human_size(report.kept_bytes)})")
    if report.staging_removed:
        click.echo(f"{verb} {report.staging_removed} local staging directories already stored in git")
    if remote and not dry_run:
        warning = conversations.push(root, remote, drop=set(report.removed_keys))
        if warning:
            raise ForgegitError(warning)
        click.echo(f"pushed the pruned {conversations.REF} to {remote}")
    if report.removed and not dry_run:
        click.echo("the objects are unreachable now: `git gc --prune=now` frees their space")
