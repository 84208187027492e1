"""The model client against a real loopback server: replies, tool calls, caching, and every failure mode."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from scripted_server import RawResponse

from forgegit.cache import ResponseCache
from forgegit.llm import LLM, Endpoint, LLMError
from forgegit.ratelimit import AdaptiveLimiter
from forgegit.scripted import HTTPError, text, tool_calls

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


# ------------------------------------------------- local servers (issue 13): what they need from a request

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_every_request_carries_max_tokens_so_a_looping_model_stops(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"))
    chat(client(server, max_tokens=1024))
    assert server.requests[0]["max_tokens"] == 1024
    chat(client(server))  # 0: none sent, the server decides
    assert "max_tokens" not in server.requests[1]


def test_max_tokens_shrinks_to_what_a_known_context_window_leaves(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"))
    chat(client(server, max_tokens=4096, context_window=2048))
    assert 64 <= server.requests[0]["max_tokens"] < 2048


def test_a_request_slower_than_timeout_fails_at_once_naming_the_setting(scripted: Any) -> None:
    server = scripted(lambda r: text("late"), latency=1.0)
    with pytest.raises(LLMError) as err:
        chat(client(server, timeout=0.2))
    assert err.value.kind == "timeout" and "raise `timeout`" in str(err.value) and "--timeout" in str(err.value)
    assert server.calls == 1  # not retried: the server is still busy with the abandoned request


def test_tools_are_sent_with_tool_choice_auto_or_what_is_configured(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"))
    chat(client(server), tools=TOOLS)
    assert server.requests[-1]["tool_choice"] == "auto"
    chat(client(server))
    assert "tool_choice" not in server.requests[-1]  # no tools, no tool_choice
    chat(client(server, tool_choice=""), tools=TOOLS)
    assert "tool_choice" not in server.requests[-1]
    chat(client(server, tool_choice="required"), tools=TOOLS)
    assert server.requests[-1]["tool_choice"] == "required"


def test_a_tool_only_assistant_turn_goes_back_with_empty_content_not_null(scripted: Any) -> None:
    server = scripted(lambda r: tool_calls(("f", {})) if len(r["messages"]) == 1 else text("done"))
    llm = client(server)

    async def go() -> Any:
        first = await llm.chat(MSG, tools=TOOLS)
        call = first.message["tool_calls"][0]
        follow = [*MSG, first.message, {"role": "tool", "tool_call_id": call["id"], "content": "1"}]
        custom = [*MSG, {"role": "assistant", "content": None, "tool_calls": first.message["tool_calls"]},
                  {"role": "tool", "tool_call_id": call["id"], "content": "1"}]  # a custom agent's own message
        await llm.chat(follow, tools=TOOLS)
        await llm.chat(custom, tools=TOOLS)
        await llm.aclose()
        return first

    assert asyncio.run(go()).message["content"] == ""
    for request in server.requests[1:]:
        assert request["messages"][1]["content"] == "" and request["messages"][1]["tool_calls"]


@pytest.mark.parametrize("failure", [
    HTTPError(500, {"error": {"message": "1 validation error for ChatCompletionRequestAssistantMessage\ncontent\n"
                                         "  Input should be a valid string [type=string_type, input_value=None]",
                              "type": "internal_server_error"}}),
    HTTPError(422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
    HTTPError(400, {"error": {"message": "unsupported parameter: foo"}}),
])
def test_a_refused_request_fails_fast_with_the_servers_message(scripted: Any, failure: Any) -> None:
    server = scripted(lambda r: failure)
    with pytest.raises(LLMError) as err:
        chat(client(server))
    assert server.calls == 1 and "not retried" in str(err.value)
    assert str(failure.status) in str(err.value)
    if failure.status == 500:
        assert "Input should be a valid string" in str(err.value)


@pytest.mark.parametrize("role,setting", [("optimizer", "optimizer_context_tokens"), ("agent", "max_turns")])
def test_a_context_length_error_names_the_setting_to_change(scripted: Any, role: str, setting: str) -> None:
    server = scripted(lambda r: HTTPError(400, {"error": {"message": "Requested tokens (9012) exceed context window of 8192"}}))
    with pytest.raises(LLMError) as err:
        chat(client(server, role=role))
    assert err.value.kind == "context_length" and setting in str(err.value) and "8192" in str(err.value)
    assert server.calls == 1


# ------------------------------------------- against a scripted server with llama.cpp's quirks

from scripted_server import Quirks  # noqa: E402


def test_a_server_that_refuses_null_content_gets_none(scripted: Any) -> None:
    server = scripted(lambda r: tool_calls(("f", {})) if len(r["messages"]) == 1 else text("done"),
                      quirks=Quirks(null_content_500=True))
    llm = client(server)

    async def go() -> Any:
        first = await llm.chat(MSG, tools=TOOLS)
        call = first.message["tool_calls"][0]
        again = await llm.chat([*MSG, {**first.message, "content": None},
                                {"role": "tool", "tool_call_id": call["id"], "content": "1"}], tools=TOOLS)
        await llm.aclose()
        return again

    assert asyncio.run(go()).message["content"] == "done"
    assert server.refused == [] and server.calls == 2


def test_a_server_that_ignores_tools_without_tool_choice_still_sees_them(scripted: Any) -> None:
    server = scripted(lambda r: tool_calls(("f", {})) if r.get("tools") else text("no tools reached me"),
                      quirks=Quirks(tools_need_tool_choice=True))
    assert chat(client(server), tools=TOOLS).message.get("tool_calls")


@pytest.mark.parametrize("report", ["llama.cpp", "vllm", "ollama"])
def test_the_context_window_is_read_from_the_server(scripted: Any, report: str) -> None:
    server = scripted(lambda r: text("ok"), quirks=Quirks(context_length=8192, report=report), model_ids=("m",))
    llm = client(server)

    async def go() -> Any:
        try:
            return await llm.context_limit(), await llm.context_limit()
        finally:
            await llm.aclose()

    assert asyncio.run(go()) == (8192, 8192)


def test_the_context_window_setting_wins_and_an_unreporting_server_is_unknown(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"), quirks=Quirks(context_length=8192, report=""))
    assert asyncio.run(client(server).context_limit()) is None
    assert asyncio.run(client(server, context_window=4096).context_limit()) == 4096
    plain = scripted(lambda r: text("ok"))  # OpenAI-like: a model list with no window
    assert asyncio.run(client(plain).context_limit()) is None
    assert plain.calls == 0  # asking never sends a chat request


def test_a_model_that_loops_without_max_tokens_is_stopped_by_it(scripted: Any) -> None:
    server = scripted(lambda r: text("Final answer: 4 " * 2000), quirks=Quirks(runaway_tokens=8000, token_seconds=0.001))
    result = chat(client(server, max_tokens=256))
    assert result.finish_reason == "length" and len(result.message["content"]) <= 256 * 4
    assert server.seen[0]["max_tokens"] == 256


def test_a_serial_server_pulls_the_limiter_down(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"), latency=0.3, quirks=Quirks(serial=True))
    limiter = AdaptiveLimiter(8)
    llm = client(server, limiter=limiter)

    async def go() -> None:
        try:
            await asyncio.gather(*(llm.chat([{"role": "user", "content": f"q{i}"}]) for i in range(24)))
        finally:
            await llm.aclose()

    asyncio.run(go())
    assert limiter.latency_backoffs >= 1 and limiter.limit <= 3
