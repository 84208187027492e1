"""Token counts for prompt budgets: tiktoken's cl100k when it is installed with its encoding cached,
else a deterministic offline approximation.

The approximation splits text with (a Python `re` transcription of) cl100k's own pre-tokenizer
pattern: words with their leading space or punctuation mark, numbers in groups of at most three
digits, punctuation runs, newlines and whitespace runs. It then estimates how many BPE pieces each
piece becomes: short words are one token, long words one more per ~5 letters, camelCase humps and
non-ASCII letters count separately. It is built to be within about 15% of cl100k on English prose
and Python source (never an exact count): budgets built on it should keep some slack.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from functools import lru_cache
from typing import Callable, Optional

from .chat import Message

DEFAULT_MARKER = "…[cut N tokens]…"

# cl100k's pre-tokenizer, with \p{L} spelled [^\W\d_] and \p{N} spelled \d for Python's `re`.
_PRETOKEN = re.compile(
    r"""'(?i:[sdmt]|ll|ve|re)"""
    r"""|(?:[^\r\n\w]|_)?[^\W\d_]+"""
    r"""|\d{1,3}"""
    r"""| ?(?:[^\s\w]|_)+[\r\n]*"""
    r"""|\s*[\r\n]+"""
    r"""|\s+(?!\S)"""
    r"""|\s+"""
)
_HUMPS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[^A-Za-z]+")
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@lru_cache(maxsize=1)
def _tiktoken_counter() -> Optional[Callable[[str], int]]:
    """cl100k from tiktoken, only when the encoding file is already cached (never downloads)."""
    try:
        import tiktoken  # type: ignore[import-not-found]
    except ImportError:
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache")
    if not os.path.isfile(os.path.join(cache, hashlib.sha1(_CL100K_URL.encode()).hexdigest())):
        return None
    try:
        enc = tiktoken.get_encoding("cl100k_base")
    except Exception:  # a broken cache or tiktoken version: fall back to the approximation
        return None
    return lambda s: len(enc.encode(s, disallowed_special=()))


def _letters_tokens(word: str) -> int:
    """BPE pieces of one run of letters: short words are one token, long ones one per ~5 letters more."""
    n = 0
    for hump in _HUMPS.findall(word):
        ascii_part = sum(1 for c in hump if c.isascii())
        n += len(hump) - ascii_part  # non-ASCII letters: about one token each
        if ascii_part > 3 and hump.isupper():  # ALLCAPS words split into short pieces
            n += math.ceil(ascii_part / 3)
        elif ascii_part:
            n += 1 + math.ceil(max(0, ascii_part - 6) / 5)
    return max(1, n)


@lru_cache(maxsize=1 << 16)
def _piece_tokens(piece: str) -> int:
    """The approximate token count of one pre-token."""
    if piece.isspace():
        return max(1, math.ceil(len(piece) / 64))
    body = piece.lstrip(" ")
    if body[:1].isalpha():
        return _letters_tokens(body)
    if body[:1].isdigit():
        return 1
    if body[1:2].isalpha():  # one mark glued to a word: "_sum", ".append", "(x"
        return _letters_tokens(body[1:])
    marks = body.rstrip("\r\n")
    nonascii = sum(1 for c in marks if not c.isascii())
    return max(1, math.ceil((len(marks) - nonascii) / 3) + nonascii)


def pieces(text: str) -> list[str]:
    """Text split like cl100k's pre-tokenizer; the pieces join back to the text."""
    return _PRETOKEN.findall(text)


def approx_tokens(text: str) -> int:
    """The offline approximation of cl100k's token count."""
    return sum(_piece_tokens(p) for p in pieces(text))


def count_tokens(text: str) -> int:
    """Tokens in text: exact cl100k when tiktoken and its encoding are available, else approximated."""
    if not text:
        return 0
    exact = _tiktoken_counter()
    return exact(text) if exact is not None else approx_tokens(text)


def _value_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def count_message_tokens(messages: list[Message]) -> int:
    """Tokens of a chat request's messages, with OpenAI's per-message overhead (3 each, 3 to prime the reply)."""
    total = 3
    for m in messages:
        total += 3
        for key, value in m.items():
            if value is None:
                continue
            if key == "content" and isinstance(value, list):  # multi-part content
                total += sum(count_tokens(_value_text(p.get("text", p) if isinstance(p, dict) else p)) for p in value)
            else:
                total += count_tokens(_value_text(value))
            if key == "name":
                total += 1
    return total


def _marker(marker: str, cut: int) -> str:
    return marker.replace("N", str(cut), 1) if "N" in marker else marker


def trim_to_tokens(text: str, max_tokens: int, marker: str = DEFAULT_MARKER) -> str:
    """Text cut to at most max_tokens, keeping its head and tail around a marker saying how much was cut."""
    if len(text.encode("utf-8")) <= max_tokens:  # no tokenizer makes more tokens than bytes
        return text
    total = count_tokens(text)
    if total <= max_tokens:
        return text
    if max_tokens <= 0:
        return ""
    window = max_tokens * 128  # more characters than max_tokens tokens can span: the middle is cut anyway
    parts = pieces(text if len(text) <= 2 * window else text[:window] + text[-window:])
    exact = _tiktoken_counter()
    costs = [exact(p) if exact is not None else _piece_tokens(p) for p in parts]
    budget = max_tokens - count_tokens(_marker(marker, total)) - 2
    while budget >= 0:
        head_n, head_t = _take(costs, (budget + 1) // 2)
        tail_n, tail_t = _take(costs[head_n:][::-1], budget - head_t)
        cut = max(0, total - head_t - tail_t)
        out = "".join(parts[:head_n]) + _marker(marker, cut) + "".join(parts[len(parts) - tail_n:])
        if count_tokens(out) <= max_tokens:
            return out
        budget -= max(1, budget // 10)
    out = _marker(marker, total)
    return out if count_tokens(out) <= max_tokens else ""


def _take(costs: list[int], budget: int) -> tuple[int, int]:
    """How many leading pieces fit in budget, and their tokens."""
    n = used = 0
    for c in costs:
        if used + c > budget:
            break
        n, used = n + 1, used + c
    return n, used
