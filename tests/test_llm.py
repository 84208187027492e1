"""The model client against a real loopback server: replies, tool calls, caching, and every failure mode."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from forgegit.cache import ResponseCache
from forgegit.llm import LLM, Endpoint, LLMError
from forgegit.ratelimit import AdaptiveLimiter
from forgegit.scripted import HTTPError, RawResponse, text, tool_calls

MSG = [{"role": "user", "content": "hi"}]


def client(server: Any, **kw: Any) -> LLM:
    return LLM("m", endpoint=Endpoint(server.base_url, "sk-test"), backoff=0.01, **kw)


def chat(llm: LLM, **kw: Any) -> Any:
    async def go() -> Any:
        try:
            return await llm.chat(MSG, **kw)
        finally:
            await llm.aclose()
    return asyncio.run(go())


def test_text_reply_with_usage_and_cost(scripted: Any) -> None:
    server = scripted(lambda r: text("hello", prompt_tokens=1000, completion_tokens=500))
    result = chat(client(server, prices={"m": {"prompt": 1.0, "completion": 2.0}}))
    assert result.message == {"role": "assistant", "content": "hello"}
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (1000, 500, 1)
    assert result.usage.cost == pytest.approx(0.002)


def test_tool_calls_come_back_as_plain_dicts(scripted: Any) -> None:
    server = scripted(lambda r: tool_calls(("f", {"x": 1})))
    result = chat(client(server), tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    call = result.message["tool_calls"][0]
    assert call["function"] == {"name": "f", "arguments": '{"x": 1}'} and result.finish_reason == "tool_calls"
    assert server.requests[0]["tools"][0]["function"]["name"] == "f"


def test_cache_answers_a_repeated_deterministic_request_without_a_call(scripted: Any, tmp_path: Path) -> None:
    server = scripted(lambda r: text("once"))
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert chat(client(server, cache=cache)).cached is False
    again = chat(client(server, cache=cache))
    assert again.cached and again.message["content"] == "once" and again.usage.calls == 0
    assert server.calls == 1
    assert chat(client(server, cache=cache, use_cache=False)).cached is False  # --no-cache
    assert server.calls == 2
    assert chat(client(server, cache=cache), temperature=0.7).cached is False  # sampling: never cached


def test_429_with_retry_after_is_honoured_and_slows_the_limiter(scripted: Any) -> None:
    answers = iter([HTTPError(429, {"error": {"message": "slow down"}}, {"retry-after": "0.2"}), text("ok")])
    server = scripted(lambda r: next(answers))
    limiter = AdaptiveLimiter(8)
    llm = client(server, limiter=limiter)
    result = chat(llm)
    assert result.message["content"] == "ok" and server.calls == 2
    assert limiter.limit < 8


@pytest.mark.parametrize("failure", [
    HTTPError(500, {"error": {"message": "boom"}}),
    HTTPError(503, "upstream down"),
    RawResponse("this is not json"),
    {"id": "x", "object": "chat.completion", "choices": []},
])
def test_transient_failures_are_retried(scripted: Any, failure: Any) -> None:
    answers = iter([failure, text("recovered")])
    server = scripted(lambda r: next(answers))
    assert chat(client(server)).message["content"] == "recovered"
    assert server.calls == 2


@pytest.mark.parametrize("status,needle", [
    (401, "rejected the API key (401): set OPENAI_API_KEY"),
    (404, "model 'm' not found"),
    (400, "answered 400"),
])
def test_fatal_status_fails_fast_with_the_setting_to_fix(scripted: Any, status: int, needle: str) -> None:
    server = scripted(lambda r: HTTPError(status, {"error": {"message": "nope"}}))
    with pytest.raises(LLMError) as err:
        chat(client(server))
    assert needle in str(err.value)
    assert server.calls == 1  # no retries on errors that retrying cannot fix


def test_retries_run_out_with_a_clear_message(scripted: Any) -> None:
    server = scripted(lambda r: HTTPError(500, {"error": {"message": "always"}}))
    with pytest.raises(LLMError, match=r"answered 500: always \(gave up after 2 retries\)"):
        chat(client(server, max_retries=2))
    assert server.calls == 3


def test_unreachable_endpoint_names_openai_base_url() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    llm = LLM("m", endpoint=Endpoint(f"http://127.0.0.1:{port}/v1", "k"), max_retries=1, backoff=0.01)
    with pytest.raises(LLMError, match="cannot reach .* set OPENAI_BASE_URL"):
        chat(llm)


def test_content_filter_is_reported(scripted: Any) -> None:
    server = scripted(lambda r: text("", finish_reason="content_filter"))
    with pytest.raises(LLMError, match="content filter"):
        chat(client(server, max_retries=1))


def test_missing_key_for_a_remote_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    with pytest.raises(LLMError, match="OPENAI_API_KEY is not set"):
        Endpoint.from_env()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")  # Ollama needs no key
    assert Endpoint.from_env().api_key
