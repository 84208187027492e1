"""`forgegit cache stats|clear`: inspect or empty the model-response cache of this repository."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .. import git
from ..cache import ResponseCache

CACHE_FILE = "cache.sqlite"


def cache_path(start: str = ".") -> Path:
    """The cache file of the repository containing start: <.git>/forgegit/cache.sqlite."""
    return git.state_dir(git.toplevel(start)) / CACHE_FILE


def human_size(n: int) -> str:
    """A byte count as B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def render_stats(stats: dict[str, Any]) -> str:
    """The stats as an aligned two-column table."""
    hits, misses = int(stats["hits"]), int(stats["misses"])
    lookups = hits + misses
    rows = [
        ("cache", str(stats["path"])),
        ("entries", str(stats["entries"])),
        ("size", human_size(int(stats["bytes"]))),
        ("hits", str(hits)),
        ("misses", str(misses)),
        ("hit rate", f"{hits / lookups:.1%}" if lookups else "-"),
        ("logged calls", str(stats["calls"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@click.group(name="cache")
def command() -> None:
    """Inspect or clear the model-response cache (.git/forgegit/cache.sqlite)."""


@command.command()
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(as_json: bool) -> None:
    """Show cached responses, size, hits/misses and logged calls."""
    with ResponseCache(cache_path()) as cache:
        data = cache.stats()
    click.echo(json.dumps(data, indent=2) if as_json else render_stats(data))


@command.command()
@click.option("--log", "with_log", is_flag=True, help="Also delete the log of every model call.")
def clear(with_log: bool) -> None:
    """Delete the cached responses (the call log is kept unless --log)."""
    with ResponseCache(cache_path()) as cache:
        calls = cache.stats()["calls"] if with_log else 0
        removed = cache.clear(log=with_log)
    noun = "response" if removed == 1 else "responses"
    message = f"removed {removed} cached {noun}"
    if with_log:
        message += f" and {calls} logged call{'' if calls == 1 else 's'}"
    click.echo(message)
