"""GitHub Actions environment files: step outputs (`$GITHUB_OUTPUT`) and the step summary.

Every function is a no-op returning False outside Actions (when its variable is unset).
"""
from __future__ import annotations

import os
import uuid
from typing import Mapping, Union

OutputValue = Union[str, int, float, None]


def in_actions() -> bool:
    """True when running inside a GitHub Actions job."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _append(variable: str, text: str) -> bool:
    """Append text to the file named by an environment variable; False when it is unset."""
    path = os.environ.get(variable)
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
    return True


def format_output(name: str, value: OutputValue) -> str:
    """One `$GITHUB_OUTPUT` entry; multi-line values use a random heredoc delimiter."""
    if not name or any(c in name for c in "=\r\n<"):
        raise ValueError(f"invalid output name {name!r}")
    text = "" if value is None else str(value)
    if "\n" not in text and "\r" not in text:
        return f"{name}={text}\n"
    delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
    while delimiter in text:  # pragma: no cover - 128 random bits
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
    return f"{name}<<{delimiter}\n{text}\n{delimiter}\n"


def set_output(name: str, value: OutputValue) -> bool:
    """Set a step output; False (and nothing written) when `$GITHUB_OUTPUT` is unset."""
    return _append("GITHUB_OUTPUT", format_output(name, value))


def set_outputs(values: Mapping[str, OutputValue]) -> bool:
    """Set several step outputs at once."""
    return _append("GITHUB_OUTPUT", "".join(format_output(k, v) for k, v in values.items()))


def append_summary(markdown: str) -> bool:
    """Append markdown to the job's step summary; False when `$GITHUB_STEP_SUMMARY` is unset."""
    return _append("GITHUB_STEP_SUMMARY", markdown if markdown.endswith("\n") else markdown + "\n")
