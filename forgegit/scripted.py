"""A minimal OpenAI-compatible chat-completions server on loopback that answers from a script.

What `forgegit demo` and the examples' `--scripted` model run: no network, no key, real HTTP.

    def script(request: dict) -> Reply | HTTPError | dict: ...
    with ScriptedServer(script) as server:
        client = OpenAI(base_url=server.base_url, api_key="scripted")

A script returns `text("...")`, `tool_calls(("name", {...}), ...)`, `HTTPError(...)` or a full
chat-completion dict; it sees the parsed JSON request. The tests' and benchmarks' server (latency,
concurrency counters, local-server quirks, a prompt cache) extends this one through its hooks
(`get`, `post`, `answer`, `completion`, `encode`, `hung_up`): see tests/scripted_server.py.
"""
from __future__ import annotations

import contextlib
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


Script = Callable[[dict[str, Any]], Union[Reply, HTTPError, dict[str, Any]]]

Response = tuple[int, bytes, str, dict[str, str]]  # status, body, content type, headers


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


def completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The chat.completion answering request with reply (usage estimated unless the reply sets it)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_tokens(
        [request.get("messages"), request.get("tools")])
    produced = reply.completion_tokens if reply.completion_tokens is not None else estimate_tokens(message)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": produced, "total_tokens": prompt + produced},
    }


_NOT_FOUND: Response = (404, b'{"error": {"message": "not found"}}', "application/json", {})


class ScriptedServer:
    """Serves POST /v1/chat/completions (and GET /v1/models) from a script, on 127.0.0.1."""

    def __init__(self, script: Script, *, model_ids: tuple[str, ...] = ()) -> None:
        self.script = script
        self.model_ids = model_ids
        self.requests: list[dict[str, Any]] = []
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

    # ------------------------------------------------------------------ hooks a richer server overrides

    def get(self, path: str) -> Optional[Any]:
        """The JSON answer to a GET of path, or None for a 404: the model list, whatever the path."""
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in self.model_ids]}

    def post(self, path: str) -> Optional[Any]:
        """The JSON answer to a POST of a path other than chat completions, or None for a 404."""
        return None

    def answer(self, request: dict[str, Any]) -> object:
        """What the script returns for a (counted) chat-completion request; an exception is a 500."""
        return self.script(request)

    def completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The chat.completion a Reply becomes."""
        return completion(request, reply)

    def encode(self, request: dict[str, Any], out: object) -> Response:
        """The HTTP response for what `answer` returned."""
        if isinstance(out, HTTPError):
            body = out.body if out.body is not None else {"error": {"message": f"HTTP {out.status}"}}
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            return out.status, payload, "application/json", out.headers
        if isinstance(out, Reply):
            out = self.completion(request, out)
        elif not isinstance(out, dict):
            raise TypeError(f"a script returned {type(out).__name__}, not a Reply, HTTPError or dict")
        return 200, json.dumps(out).encode(), "application/json", {}

    def hung_up(self) -> None:
        """A client hung up mid-request (e.g. a cancelled task): not an error of the server's."""

    # ------------------------------------------------------------------ the HTTP server

    def start(self) -> "ScriptedServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two sends cost ~40 ms a reply

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, response: Response) -> None:
                status, body, content_type, headers = response
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, found: Optional[Any]) -> None:
                self._send(_NOT_FOUND if found is None else (200, json.dumps(found).encode(), "application/json", {}))

            def do_GET(self) -> None:
                self._json(server.get(self.path.split("?", 1)[0].rstrip("/")))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?", 1)[0].rstrip("/")
                if not path.endswith("/chat/completions"):
                    self._json(server.post(path))
                    return
                try:
                    request = json.loads(raw)
                except ValueError:
                    self._send((400, b'{"error": {"message": "bad json"}}', "application/json", {}))
                    return
                request["_headers"] = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(request)
                try:
                    out = server.answer(request)
                except Exception as exc:  # a broken script is a 500, visible in the test
                    out = HTTPError(500, {"error": {"message": f"script raised {exc!r}", "type": "server_error"}})
                self._send(server.encode(request, out))

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # bursts of concurrent clients must not be reset

            def handle_error(self, request: Any, client_address: Any) -> None:
                server.hung_up()

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
