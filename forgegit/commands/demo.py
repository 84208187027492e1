"""`forgegit demo`: a complete offline training against a scripted model on loopback."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import click

from .. import demo, git
from ..report import summary_table
from ..scripted import ScriptedServer, openai_env
from ..workspace import Workspace
from .train import _train


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Where to create the demo repository (default: a new temp dir).")
def command(directory: Optional[str]) -> None:
    """Train a small bundled example against a SCRIPTED model, offline, in under a minute."""
    path = Path(directory) if directory else demo.demo_dir()
    if directory and path.exists() and any(path.iterdir()):
        raise click.ClickException(f"{path} is not empty")
    demo.make_repo(path)
    click.echo("forgegit demo: the model is SCRIPTED (a local server on 127.0.0.1 answers from a script);")
    click.echo("no network, no API key, no cost. Real training talks to your OpenAI-compatible endpoint.")
    click.echo(f"demo repository: {path}\n")
    with ScriptedServer(demo.make_script()) as server, openai_env(server.base_url):
        ws = Workspace.open(path)
        tasks = ws.task_set(ws.settings.tasks)
        run, _ = asyncio.run(_train(ws, tasks, tasks, None, None, "demo", None, merge=False))
    click.echo("")
    click.echo(summary_table(run))
    click.echo(f"\nstopped: {run.stop_reason} (patience {ws.settings.patience}); model calls: {server.calls}")
    click.echo("\nthe training branch, with each epoch and its revert as commits:")
    click.echo(git.out(["log", "--oneline", "--graph", run.branch], path))
    click.echo(f"\ninspect it:\n  cd {path}\n  git log --notes=forgegit-summary {run.branch}\n  forgegit log")
