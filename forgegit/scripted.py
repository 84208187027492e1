"""A real OpenAI-compatible chat-completions server on loopback that answers from a script.

Used by the tests, `forgegit demo` and the benchmarks: no network, no key, real HTTP.

    def script(request: dict) -> Reply | dict: ...
    with ScriptedServer(script) as server:
        client = OpenAI(base_url=server.base_url, api_key="scripted")

A script returns `text("...")`, `tool_calls(("name", {...}), ...)`, `HTTPError(...)`
or a full chat-completion dict; it sees the parsed JSON request.

`ScriptedServer(script, prompt_cache=PromptCache())` reports cached prompt tokens as OpenAI's
prefix cache would. `ScriptedServer(script, quirks=Quirks(...))` behaves like a local server that is strict where
real ones are (`Quirks.llama_cpp()` is llama-cpp-python's server as forgegit first met it):
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Optional, Union


@dataclass
class Reply:
    """An assistant message the server wraps into a chat.completion."""

    content: Optional[str] = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: Optional[str] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None


@dataclass
class HTTPError:
    """An error response: status, body (JSON-able or raw text) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


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

    def refusal(self, request: dict[str, Any]) -> Optional["HTTPError"]:
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

    def generate(self, request: dict[str, Any], reply: "Reply") -> "Reply":
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


Script = Callable[[dict[str, Any]], Union[Reply, HTTPError, RawResponse, dict[str, Any]]]


def text(content: str, **kw: Any) -> Reply:
    return Reply(content=content, **kw)


def tool_calls(*calls: tuple[str, Any], content: Optional[str] = None) -> Reply:
    """Tool calls; arguments may be a dict (JSON-encoded here) or a raw string sent as-is."""
    out = []
    for name, args in calls:
        out.append({
            "id": "call_" + uuid.uuid4().hex[:12],
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        })
    return Reply(content=content, tool_calls=out)


def estimate_tokens(obj: Any) -> int:
    """A deterministic token estimate (about 4 characters a token) for scripted usage."""
    s = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True)
    return max(1, len(s) // 4)


def _completion(request: dict[str, Any], reply: Reply, cache: Optional[PromptCache] = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_tokens(
        [request.get("messages"), request.get("tools")])
    completion = reply.completion_tokens if reply.completion_tokens is not None else estimate_tokens(message)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  **({"prompt_tokens_details": {"cached_tokens": cache.cached_tokens(request, prompt)}}
                     if cache is not None else {})},
    }


class ScriptedServer:
    """Serves POST /v1/chat/completions (and GET /v1/models) from a script, on 127.0.0.1."""

    def __init__(self, script: Script, *, latency: float = 0.0, model_ids: tuple[str, ...] = (),
                 quirks: Optional[Quirks] = None, prompt_cache: Optional[PromptCache] = None) -> None:
        self.script = script
        self.prompt_cache = prompt_cache  # report cached prompt tokens like OpenAI (None: report none)
        self.latency = latency
        self.model_ids = model_ids
        self.quirks = quirks
        self.refused: list[HTTPError] = []  # what the quirks refused (never reaches the script)
        self.seen: list[dict[str, Any]] = []  # requests as the model saw them (after the quirks)
        self._serial = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was handling at once
        self.dropped = 0  # requests whose client hung up
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        if isinstance(host, (bytes, bytearray)):  # typeshed allows it; an AF_INET server's host is a str
            host = host.decode()
        return f"http://{host}:{port}/v1"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> "ScriptedServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two sends cost ~40 ms a reply

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if server.quirks is not None:
                    found = server.quirks.report_window(path, None, server.model_ids)
                    if found is not None:
                        self._send(200, json.dumps(found).encode(), "application/json", {})
                    else:
                        self._send(404, b'{"error": {"message": "not found"}}', "application/json", {})
                    return
                data = {"object": "list", "data": [{"id": m, "object": "model"} for m in server.model_ids]}
                self._send(200, json.dumps(data).encode(), "application/json", {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?", 1)[0].rstrip("/")
                if not path.endswith("/chat/completions"):
                    found = server.quirks.report_window(path, None, server.model_ids) if server.quirks else None
                    if found is None:
                        self._send(404, b'{"error": {"message": "not found"}}', "application/json", {})
                    else:
                        self._send(200, json.dumps(found).encode(), "application/json", {})
                    return
                try:
                    request = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error": {"message": "bad json"}}', "application/json", {})
                    return
                request["_headers"] = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(request)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                quirks = server.quirks
                try:
                    with server._serial if quirks is not None and quirks.serial else contextlib.nullcontext():
                        if server.latency:
                            time.sleep(server.latency)
                        refused = quirks.refusal(request) if quirks is not None else None
                        if refused is not None:
                            with server._lock:
                                server.refused.append(refused)
                            out: Any = refused
                        else:
                            seen = quirks.shape(request) if quirks is not None else request
                            with server._lock:
                                server.seen.append(seen)
                            out = server.script(seen)
                            if quirks is not None and isinstance(out, Reply):
                                out = quirks.generate(seen, out)
                except Exception as exc:  # a broken script is a 500, visible in the test
                    out = HTTPError(500, {"error": {"message": f"script raised {exc!r}", "type": "server_error"}})
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if isinstance(out, HTTPError):
                    body = out.body if out.body is not None else {"error": {"message": f"HTTP {out.status}"}}
                    payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                    self._send(out.status, payload, "application/json", out.headers)
                elif isinstance(out, RawResponse):
                    self._send(200, out.body.encode(), out.content_type, {})
                else:
                    data = out if isinstance(out, dict) else _completion(request, out, server.prompt_cache)
                    self._send(200, json.dumps(data).encode(), "application/json", {})

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # bursts of concurrent clients must not be reset

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hung up mid-request (e.g. a cancelled task) is not the test's business.
                server.dropped += 1

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def last_user_message(request: dict[str, Any]) -> str:
    for m in reversed(request.get("messages", [])):
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, str):
            return content
    return ""


def tool_names(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


def tool_results(request: dict[str, Any]) -> list[str]:
    """Contents of the tool messages after the last user message (what the agent saw so far)."""
    out: list[str] = []
    for m in request.get("messages", []):
        if m.get("role") == "user":
            out = []
        elif m.get("role") == "tool":
            out.append(str(m.get("content")))
    return out


@contextlib.contextmanager
def openai_env(base_url: str, api_key: str = "scripted") -> Iterator[None]:
    """Point the OpenAI SDK's variables (OPENAI_BASE_URL, OPENAI_API_KEY) at a server, then restore them."""
    old = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"] = base_url, api_key
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
