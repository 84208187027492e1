"""The scripted server's local-server quirks: each one bites a client that does what OpenAI allows."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from scripted_server import Quirks

from forgegit.scripted import text, tool_calls

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def post(server: Any, body: dict[str, Any], path: str = "/chat/completions", root: bool = False) -> tuple[int, Any]:
    base = server.base_url[: -len("/v1")] if root else server.base_url
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_null_content_beside_tool_calls_is_answered_500_as_llama_cpp_python_does(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"), quirks=Quirks(null_content_500=True))
    calls = tool_calls(("f", {})).tool_calls
    status, body = post(server, {"model": "m", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": calls}]})
    assert status == 500 and "validation error" in body["error"]["message"] and server.calls == 1
    assert post(server, {"model": "m", "messages": [{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "", "tool_calls": calls}]})[0] == 200


def test_tools_without_tool_choice_never_reach_the_model(scripted: Any) -> None:
    server = scripted(lambda r: text(f"tools: {len(r.get('tools') or [])}"), quirks=Quirks(tools_need_tool_choice=True))
    msg = [{"role": "user", "content": "hi"}]
    assert post(server, {"model": "m", "messages": msg, "tools": TOOLS})[1]["choices"][0]["message"]["content"] == "tools: 0"
    assert post(server, {"model": "m", "messages": msg, "tools": TOOLS, "tool_choice": "auto"}
                )[1]["choices"][0]["message"]["content"] == "tools: 1"


def test_a_prompt_over_the_reported_context_length_is_refused_with_400(scripted: Any) -> None:
    server = scripted(lambda r: text("ok"), quirks=Quirks(context_length=100, report="llama.cpp"))
    status, body = post(server, {"model": "m", "messages": [{"role": "user", "content": "word " * 200}]})
    assert status == 400 and "exceed context window of 100" in body["error"]["message"]
    assert post(server, {"model": "m", "messages": [{"role": "user", "content": "short"}]})[0] == 200
    root = server.base_url[: -len("/v1")]
    assert get(root + "/props")[1]["default_generation_settings"]["n_ctx"] == 100


def test_each_server_kind_reports_its_window_its_own_way(scripted: Any) -> None:
    vllm = scripted(lambda r: text("ok"), quirks=Quirks(context_length=4096, report="vllm"), model_ids=("m",))
    assert get(vllm.base_url + "/models")[1]["data"][0]["max_model_len"] == 4096
    assert get(vllm.base_url[: -len("/v1")] + "/props")[0] == 404
    ollama = scripted(lambda r: text("ok"), quirks=Quirks(context_length=2048, report="ollama"))
    status, body = post(ollama, {"model": "m"}, path="/api/show", root=True)
    assert status == 200 and "num_ctx" in body["parameters"] and ollama.calls == 0


def test_without_max_tokens_a_small_model_loops_until_the_limit(scripted: Any) -> None:
    server = scripted(lambda r: text("Final answer: 4"), quirks=Quirks(runaway_tokens=500, token_seconds=0.001))
    msg = [{"role": "user", "content": "2+2?"}]
    t0 = time.monotonic()
    _, body = post(server, {"model": "m", "messages": msg})
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 500
    assert time.monotonic() - t0 >= 0.5
    _, body = post(server, {"model": "m", "messages": msg, "max_tokens": 64})
    assert body["choices"][0]["finish_reason"] == "stop" and body["choices"][0]["message"]["content"] == "Final answer: 4"


def test_the_packaged_server_answers_replies_errors_and_a_broken_script_without_the_test_extras() -> None:
    """`forgegit demo` and the examples run forgegit.scripted.ScriptedServer itself: each answer kind works there."""
    from forgegit.scripted import HTTPError, ScriptedServer

    def script(request: dict[str, Any]) -> Any:
        said = request["messages"][-1]["content"]
        if said == "boom":
            raise RuntimeError("broken script")
        return {"text": text("hi"), "error": HTTPError(429, {"error": {"message": "slow down"}}),
                "raw": {"id": "x", "choices": []}}[said]

    with ScriptedServer(script, model_ids=("m",)) as server:
        ask = lambda said: post(server, {"model": "m", "messages": [{"role": "user", "content": said}]})  # noqa: E731
        status, body = ask("text")
        assert status == 200 and body["choices"][0]["message"]["content"] == "hi" and body["usage"]["total_tokens"] > 0
        assert ask("error") == (429, {"error": {"message": "slow down"}})
        assert ask("raw") == (200, {"id": "x", "choices": []})
        status, body = ask("boom")
        assert status == 500 and "broken script" in body["error"]["message"]
        assert get(server.base_url + "/models")[1]["data"] == [{"id": "m", "object": "model"}]
        assert server.calls == 4 and not hasattr(server, "max_in_flight")
