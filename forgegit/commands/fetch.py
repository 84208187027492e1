"""`forgegit fetch [REMOTE]`: fetch the recorded results (notes) and agent conversations of other clones."""
from __future__ import annotations

import click

from .. import git, sync


@click.command("fetch")
@click.argument("remote", default="origin")
def command(remote: str) -> None:
    """Fetch REMOTE's forgegit notes and conversations, merged into this clone's (nothing local is lost)."""
    got = sync.fetch(git.toplevel("."), remote)
    click.echo(f"fetched {' and '.join(got)} from {remote}" if got else f"{remote} has no forgegit notes or conversations")
