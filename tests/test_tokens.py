"""Token counting: prompt budgets must be measured in tokens, not characters."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgegit import tokens
from forgegit.tokens import approx_tokens, count_message_tokens, count_tokens, pieces, trim_to_tokens

# Published cl100k_base counts (OpenAI cookbook, "How to count tokens with tiktoken").
CL100K = {
    "hello world": 2,
    "tiktoken is great!": 6,
    "antidisestablishmentarianism": 6,
    "2 + 2 = 4": 7,
    "お誕生日おめでとう": 9,
}

CODE = '''def digit_sum(n: int) -> int:
    """Sum of the decimal digits of n.

    Args:
        n: The number.
    """
    return sum(int(d) for d in str(abs(n)))
'''


def test_pieces_join_back_to_the_text() -> None:
    """Splitting never loses or invents characters (otherwise trimming would corrupt text)."""
    for text in [*CL100K, CODE, "a\r\n\tb  c\n\n  ", "x" * 1000, "12345678 éè 中文 ```json\n{}```"]:
        assert "".join(pieces(text)) == text


def test_numbers_split_in_groups_of_three_digits() -> None:
    assert pieces("1234567") == ["123", "456", "7"]
    assert approx_tokens("1234567") == 3


def test_approximation_is_close_to_published_cl100k_counts() -> None:
    """A budget of N tokens is roughly N real tokens: within 15% over these samples."""
    approx = sum(approx_tokens(t) for t in CL100K)
    real = sum(CL100K.values())
    assert abs(approx - real) / real <= 0.15
    for text, n in CL100K.items():
        assert abs(approx_tokens(text) - n) <= max(1, n // 4), text


def test_tokens_are_not_characters() -> None:
    """English prose and code come out at 3-5 characters a token, like a real BPE tokenizer."""
    prose = "The optimizer reads the failed tasks and the checker's feedback, then revises the functions. " * 20
    for text in (prose, CODE * 10):
        ratio = len(text) / count_tokens(text)
        assert 2.8 <= ratio <= 5.5, ratio


def test_count_tokens_is_deterministic_and_monotone() -> None:
    assert count_tokens("") == 0
    assert count_tokens(CODE) == count_tokens(CODE)
    assert count_tokens(CODE + CODE) >= count_tokens(CODE)


def test_count_tokens_falls_back_when_tiktoken_has_no_cached_encoding() -> None:
    """Offline, tiktoken must never be asked to download: the approximation is used."""
    tokens._tiktoken_counter.cache_clear()
    try:
        if tokens._tiktoken_counter() is None:
            assert count_tokens(CODE) == approx_tokens(CODE)
    finally:
        tokens._tiktoken_counter.cache_clear()


def test_message_tokens_include_overhead_and_tool_calls() -> None:
    msgs = [{"role": "user", "content": "hello world"}]
    assert count_message_tokens(msgs) == 3 + 3 + count_tokens("user") + count_tokens("hello world")
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "digit_sum", "arguments": '{"n": 12345}'}}]}
    assert count_message_tokens(msgs + [call]) > count_message_tokens(msgs) + 10


def test_trim_keeps_short_text_unchanged() -> None:
    assert trim_to_tokens(CODE, 1000) == CODE


@pytest.mark.parametrize("budget", [20, 50, 200])
def test_trim_keeps_head_and_tail_within_budget(budget: int) -> None:
    """A long tool output is cut in the middle: the start and the end (often the answer) survive."""
    text = "START " + " ".join(f"line{i} value {i * 7}" for i in range(500)) + " END"
    out = trim_to_tokens(text, budget)
    assert count_tokens(out) <= budget
    assert out.startswith("START")
    assert out.endswith("END")
    cut = int(out.split("[cut ")[1].split(" tokens]")[0])
    assert cut > 0 and cut >= count_tokens(text) - budget


def test_trim_with_tiny_budget_never_exceeds_it() -> None:
    text = "word " * 100
    for budget in range(0, 12):
        assert count_tokens(trim_to_tokens(text, budget)) <= budget


def test_trim_custom_marker() -> None:
    out = trim_to_tokens("alpha " * 300, 40, marker="<<N cut>>")
    assert "cut>>" in out and count_tokens(out) <= 40


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_text_splits_losslessly_and_trims_within_budget(text: str) -> None:
    """No character (combining marks, emoji, control codes) can make trimming lose or overrun."""
    assert "".join(pieces(text)) == text
    out = trim_to_tokens(text, 10)
    assert count_tokens(out) <= 10
    assert out == text or "cut" in out or out == ""
