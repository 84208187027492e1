"""The tests' and benchmarks' scripted server: forgegit.scripted.ScriptedServer plus what only they use.

    ScriptedServer(script, latency=0.2)              # each answer takes 0.2 s
    ScriptedServer(script, prompt_cache=PromptCache())  # cached prompt tokens reported as OpenAI's prefix cache would
    ScriptedServer(script, quirks=Quirks.llama_cpp())   # strict where local servers are (llama-cpp-python's, as forgegit first met it)

It counts the requests in flight (`max_in_flight`) and the clients that hung up (`dropped`), and keeps what
the quirks refused (`refused`) and what the model saw (`seen`). A script may also return a RawResponse.
Tests import it as `scripted_server` (tests/ is on pytest's path); bench/_common.py puts tests/ on sys.path.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from forgegit import scripted
from forgegit.scripted import HTTPError, Reply


@dataclass
class RawResponse:
    """A 200 response with a raw body, e.g. something that is not JSON."""

    body: str
    content_type: str = "application/json"


@dataclass
class Quirks:
    """How a local OpenAI-compatible server departs from OpenAI's API (each off by default).

    null_content_500: an assistant message with `"content": null` is answered 500 with a pydantic
        validation error (llama-cpp-python);
    tools_need_tool_choice: `tools` are dropped before the script sees the request unless it carries
        `tool_choice` (llama-cpp-python's chatml-function-calling format);
    context_length: the served context window: reported (see `report`) and enforced, a prompt longer
        than that, counted with this server's own tokenizer (`chars_per_token`), answered 400;
    report: how the window is reported: "llama.cpp" (/props n_ctx), "vllm" (/v1/models max_model_len),
        "ollama" (/api/show num_ctx) or "" (not at all);
    runaway_tokens: without `max_tokens` the model loops: the reply grows to this many tokens, taking
        `token_seconds` each, cut with finish_reason "length"; with it, the reply is cut at max_tokens;
    serial: one request at a time (later ones queue), like a single llama.cpp slot.
    """

    null_content_500: bool = False
    tools_need_tool_choice: bool = False
    context_length: int = 0
    report: str = "llama.cpp"
    chars_per_token: float = 3.0
    runaway_tokens: int = 0
    token_seconds: float = 0.0
    serial: bool = False

    @classmethod
    def llama_cpp(cls, context_length: int = 8192, **kw: Any) -> "Quirks":
        return cls(null_content_500=True, tools_need_tool_choice=True, context_length=context_length,
                   runaway_tokens=kw.pop("runaway_tokens", 8000), **kw)

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        """This server's own count of a request's prompt (its tokenizer is not forgegit's)."""
        shown = [request.get("messages"), request.get("tools") if "tools" in request else None]
        return int(len(json.dumps(shown, ensure_ascii=False)) / self.chars_per_token)

    def refusal(self, request: dict[str, Any]) -> Optional[HTTPError]:
        if self.null_content_500:
            for i, m in enumerate(request.get("messages") or []):
                if isinstance(m, dict) and m.get("role") == "assistant" and "content" in m and m["content"] is None:
                    return HTTPError(500, {"error": {"message": (
                        f"1 validation error for ChatCompletionRequestAssistantMessage\nmessages.{i}.content\n"
                        "  Input should be a valid string [type=string_type, input_value=None, input_type=NoneType]"),
                        "type": "internal_server_error"}})
        if self.context_length:
            n = self.prompt_tokens(request)
            if n > self.context_length:
                return HTTPError(400, {"error": {"message": (
                    f"Requested tokens ({n}) exceed context window of {self.context_length}"),
                    "type": "invalid_request_error"}})
        return None

    def shape(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request as the model sees it."""
        if self.tools_need_tool_choice and "tool_choice" not in request:
            request = {k: v for k, v in request.items() if k != "tools"}
        return request

    def generate(self, request: dict[str, Any], reply: Reply) -> Reply:
        if not self.runaway_tokens or reply.tool_calls:
            return reply
        limit = request.get("max_tokens")
        content = reply.content or ""
        if limit is None:
            n = self.runaway_tokens
            if self.token_seconds:
                time.sleep(n * self.token_seconds)
            loop = (content + " ") * (n * 4 // max(1, len(content) + 1) + 1)
            return Reply(content=loop[: n * 4], finish_reason="length", completion_tokens=n)
        if len(content) > int(limit) * 4:
            return Reply(content=content[: int(limit) * 4], finish_reason="length", completion_tokens=int(limit))
        return reply

    def report_window(self, path: str, body: Optional[dict[str, Any]], model_ids: tuple[str, ...]) -> Optional[Any]:
        """The answer to a GET /props, GET /v1/models or POST /api/show, or None when not reported there."""
        n, how = self.context_length, self.report if self.context_length else ""
        if path.endswith("/models"):
            data: list[dict[str, Any]] = [{"id": m, "object": "model"} for m in model_ids or ("local",)]
            if how == "vllm":
                data = [{**d, "max_model_len": n} for d in data]
            elif how == "llama.cpp":
                data = [{**d, "meta": {"n_ctx_train": n * 4, "n_vocab": 49152}} for d in data]
            return {"object": "list", "data": data}
        if path == "/props" and how == "llama.cpp":
            return {"default_generation_settings": {"n_ctx": n}, "total_slots": 1}
        if path == "/api/show" and how == "ollama":
            return {"parameters": f"num_ctx                        {n}\nstop \"<|im_end|>\"",
                    "model_info": {"llama.context_length": n * 4}}
        return None


@dataclass
class PromptCache:
    """A provider's prompt (prefix) cache, as OpenAI documents it and vLLM implements it: the rendered
    prompt (the tool schemas, then the messages in order) is cut into blocks of `block` tokens, each
    block keyed by a hash chained over every block before it; a request is served from the cache the
    leading blocks an earlier request already had, once at least `min_tokens` match, and that count is
    reported as `usage.prompt_tokens_details.cached_tokens`. A prompt that puts anything variable
    early (a date, the task, a shuffled tool list) shares few blocks with the next.
    Tokens are `chars_per_token` characters of the rendered prompt."""

    min_tokens: int = 1024
    block: int = 128
    chars_per_token: float = 4.0
    seen: set[bytes] = field(default_factory=set)
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @staticmethod
    def render(request: dict[str, Any]) -> str:
        """The prompt as a model sees it: tools first (as OpenAI renders them), then each message."""
        parts = [json.dumps(request.get("tools") or [], sort_keys=True)]
        for m in request.get("messages") or []:
            if isinstance(m, dict):
                parts.append(f"<|{m.get('role')}|>{json.dumps(m.get('content'))}"
                             f"{json.dumps(m.get('tool_calls'), sort_keys=True) if m.get('tool_calls') else ''}")
        return "\n".join(parts)

    def cached_tokens(self, request: dict[str, Any], prompt_tokens: int) -> int:
        """The tokens of request's prompt served from the cache; its blocks are then cached too."""
        prompt = self.render(request).encode()
        size = max(1, int(self.block * self.chars_per_token))
        chain, keys = b"", []
        for start in range(0, len(prompt) - size + 1, size):  # whole blocks only, as providers cache
            chain = hashlib.sha256(chain + prompt[start:start + size]).digest()
            keys.append(chain)
        with self.lock:
            hit = 0
            while hit < len(keys) and keys[hit] in self.seen:
                hit += 1
            self.seen.update(keys)
            tokens = hit * self.block
            if tokens < self.min_tokens or not tokens:
                return 0
            self.hits += 1
        return min(prompt_tokens, tokens)


class ScriptedServer(scripted.ScriptedServer):
    """forgegit's scripted server with latency, concurrency counters, local-server quirks and a prompt cache."""

    def __init__(self, script: Callable[[dict[str, Any]], Any], *, latency: float = 0.0,
                 model_ids: tuple[str, ...] = (), quirks: Optional[Quirks] = None,
                 prompt_cache: Optional[PromptCache] = None) -> None:
        super().__init__(script, model_ids=model_ids)
        self.latency = latency
        self.quirks = quirks
        self.prompt_cache = prompt_cache  # report cached prompt tokens like OpenAI (None: report none)
        self.refused: list[HTTPError] = []  # what the quirks refused (never reaches the script)
        self.seen: list[dict[str, Any]] = []  # requests as the model saw them (after the quirks)
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was handling at once
        self.dropped = 0  # requests whose client hung up
        self._serial = threading.Lock()

    def get(self, path: str) -> Optional[Any]:
        if self.quirks is not None:
            return self.quirks.report_window(path, None, self.model_ids)
        return super().get(path)

    def post(self, path: str) -> Optional[Any]:
        return self.quirks.report_window(path, None, self.model_ids) if self.quirks is not None else None

    def answer(self, request: dict[str, Any]) -> object:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        quirks = self.quirks
        try:
            with self._serial if quirks is not None and quirks.serial else contextlib.nullcontext():
                if self.latency:
                    time.sleep(self.latency)
                refused = quirks.refusal(request) if quirks is not None else None
                if refused is not None:
                    with self._lock:
                        self.refused.append(refused)
                    return refused
                seen = quirks.shape(request) if quirks is not None else request
                with self._lock:
                    self.seen.append(seen)
                out = self.script(seen)
                if quirks is not None and isinstance(out, Reply):
                    out = quirks.generate(seen, out)
                return out
        finally:
            with self._lock:
                self.in_flight -= 1

    def completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        data = super().completion(request, reply)
        if self.prompt_cache is not None:
            data["usage"]["prompt_tokens_details"] = {
                "cached_tokens": self.prompt_cache.cached_tokens(request, data["usage"]["prompt_tokens"])}
        return data

    def encode(self, request: dict[str, Any], out: object) -> scripted.Response:
        if isinstance(out, RawResponse):
            return 200, out.body.encode(), out.content_type, {}
        return super().encode(request, out)

    def hung_up(self) -> None:
        self.dropped += 1
