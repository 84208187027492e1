"""GitHub Actions workflow commands (`::error file=...::message`, groups) with GitHub's escaping.

See https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO, Iterator, Optional

LEVELS = ("error", "warning", "notice")


def escape_data(s: str) -> str:
    """Escape a command's message: `%`, CR and LF (so a message stays one command)."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """Escape a command property value: like data, plus `:` and `,` (the property separators)."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: object) -> str:
    """One workflow command line `::name k=v,...::message`; properties that are None are left out."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def annotation(
    level: str,
    message: str,
    file: Optional[str] = None,
    line: Optional[int] = None,
    title: Optional[str] = None,
    *,
    end_line: Optional[int] = None,
    col: Optional[int] = None,
    end_column: Optional[int] = None,
) -> str:
    """An error/warning/notice annotation, e.g. `::error file=functions/a.py,line=3::no docstring`."""
    if level not in LEVELS:
        raise ValueError(f"annotation level must be one of {', '.join(LEVELS)}, not {level!r}")
    return command(
        level, message,
        file=file, line=line, endLine=end_line, col=col, endColumn=end_column, title=title,
    )


@contextmanager
def group(title: str, file: Optional[IO[str]] = None) -> Iterator[None]:
    """Fold everything printed inside the block under a collapsible `title` in the Actions log."""
    out = file if file is not None else sys.stdout
    print(command("group", title), file=out, flush=True)
    try:
        yield
    finally:
        print(command("endgroup"), file=out, flush=True)
