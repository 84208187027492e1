"""JSON from untrusted places (model replies, git notes, task files), parsed within bounds.

`json.loads` raises RecursionError, not ValueError, on deep nesting (100,000 brackets), and a value
that parses at depth 900 still breaks later writers (the indented note encoder recurses per level).
`loads` turns both into a `JSONError` (a ValueError) that says what is wrong, so every caller that
already handles bad JSON handles these too.
"""
from __future__ import annotations

import json
from typing import Any, Optional

MAX_DEPTH = 64  # containers inside containers; forgegit's own records need about 12


class JSONError(ValueError):
    """Text that is not JSON within the bounds asked for; the message is one line."""


def depth(value: object) -> int:
    """How deeply containers nest in value (a scalar is 0, `[]` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in items if isinstance(child, (dict, list)))
    return deepest


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: Optional[int] = None) -> Any:
    """json.loads(text), or JSONError: not JSON, nested deeper than max_depth, or longer than max_bytes."""
    if max_bytes is not None and len(text) > max_bytes:
        raise JSONError(f"too large: {len(text):,} bytes, at most {max_bytes:,}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONError(f"nested too deeply: at most {max_depth} levels") from None
    except MemoryError:
        raise JSONError("too large to parse") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise JSONError(str(exc.args[0]) if exc.args else "not valid JSON") from None
    levels = depth(value)
    if levels > max_depth:
        raise JSONError(f"nested too deeply: {levels} levels, at most {max_depth}")
    return value
