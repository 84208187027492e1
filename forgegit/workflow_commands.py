"""GitHub Actions workflow commands (`::error file=...::message`, groups) with GitHub's escaping.

See https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions.
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import IO, Iterator, Optional

LEVELS = ("error", "warning", "notice")

_ZWSP = "\u200b"  # splits `::` and `##[` without changing what a reader sees
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": " "}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_LEADING_COMMAND = re.compile(r"^(\s*):(?=:)")


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _defuse_line(line: str) -> str:
    line = _LEADING_COMMAND.sub(lambda m: m.group(1) + ":" + _ZWSP, line)  # `::error ...` at a line start
    return line.replace("##[", "#" + _ZWSP + "#[")  # the runner's older `##[command]` form, anywhere


def safe_text(value: object, limit: Optional[int] = None) -> str:
    """Text from the optimizer, the model or function output, safe to print in a GitHub Actions log.

    It becomes one line (CR, LF and other control characters, Unicode line separators and bidi
    controls are shown as escapes such as `\\n`), and it cannot be read as a workflow command:
    a leading `::` and any `##[` are split with a zero-width space. So `::error ...`,
    `::stop-commands::...` or `::add-mask::...` from an LLM never reach the runner as commands.
    With limit, the text is cut to that many characters (with `…`)."""
    text = _UNSAFE.sub(_escape_char, str(value))
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return _defuse_line(text)


def safe_lines(text: str) -> str:
    """Multi-line text (a markdown body, a table) with each line defused like safe_text, the newlines kept."""
    return "\n".join(safe_text(line) for line in str(text).replace("\r\n", "\n").split("\n"))


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
