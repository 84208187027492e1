"""`forgegit push [REMOTE]`: push the recorded results (notes) and agent conversations."""
from __future__ import annotations

import click

from .. import git, sync
from ..errors import ForgegitError


@click.command("push")
@click.argument("remote", default="origin")
def command(remote: str) -> None:
    """Push refs/notes/forgegit and refs/forgegit/conversations to REMOTE, merged with the remote's."""
    warnings = sync.push(git.toplevel("."), remote)
    if warnings:
        raise ForgegitError("; ".join(warnings))
    click.echo(f"pushed the forgegit notes and conversations to {remote}")
