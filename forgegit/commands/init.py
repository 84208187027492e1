"""`forgegit init`: scaffold forgegit.toml, functions/ and an example task file."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import gate
from ..config import CONFIG_FILE, Settings, render_config
from ..errors import ForgegitError

EXAMPLE_TASKS = [
    {"id": "add", "question": "What is 1234 + 4321?", "answer": "5555"},
    {"id": "percent", "question": "What is 15% of 80?", "answer": "12"},
    {"id": "words", "question": "Tom has 3 boxes of 12 pencils and gives away 7 pencils. How many are left?", "answer": "29"},
]


def scaffold(root: Path) -> list[Path]:
    """Write the files `init` creates; refuses (and writes nothing) if any already exists."""
    settings = Settings(tasks="tasks/train.jsonl")
    files = {
        root / CONFIG_FILE: render_config(settings),
        root / "functions" / ".gitkeep": "",
        root / "tasks" / "train.jsonl": "".join(json.dumps(t) + "\n" for t in EXAMPLE_TASKS),
    }
    existing = [p for p in files if p.exists()]
    if existing:
        names = ", ".join(str(p.relative_to(root)) for p in existing)
        raise ForgegitError(f"refusing to overwrite {names} (remove it or run init elsewhere)")
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return list(files)


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def command(directory: str) -> None:
    """Scaffold forgegit.toml, functions/ and an example task file in DIRECTORY."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for p in scaffold(root):
        click.echo(f"created {p}")
    s = Settings()
    warning = gate.power_warning(len(EXAMPLE_TASKS), s.gate, s.alpha, "tasks/train.jsonl", batch_size=s.batch_size,
                                 sequential=s.sequential)
    if warning:
        click.echo(f"warning: {warning}")
    click.echo("next: add functions/<name>.py files, then `forgegit check` and `forgegit eval`")
