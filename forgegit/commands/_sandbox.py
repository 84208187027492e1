"""The sandbox line `eval` and `train` print when function code first runs."""
from __future__ import annotations

import click

from ..isolation import Isolation


def announce_sandbox(isolation: Isolation) -> None:
    """Say which isolation level is in force, beside the command's other progress lines (below
    secrets-safe the sandbox has already refused, unless `sandbox = "unsafe"` / --unsafe-sandbox)."""
    if isolation.safe:
        click.echo(f"sandbox: {isolation.summary()}")
    else:
        click.echo(f"sandbox: WARNING, running function code unsafely as asked: {isolation.summary()}", err=True)
