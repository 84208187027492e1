"""The model client: any OpenAI-compatible endpoint through the openai SDK, with retries,
rate-limit back-off, a response cache, usage and cost accounting, and a log of every call."""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import openai

try:  # openai >= 3 sends requests through httpx2, earlier versions through httpx
    from httpx2 import Response as _HTTP_RESPONSE
except ImportError:  # pragma: no cover
    from httpx import Response as _HTTP_RESPONSE  # type: ignore[no-redef, import-not-found, unused-ignore]

from . import safejson
from .cache import ResponseCache
from .chat import Message, ToolSchema
from .cost import cost_of
from .errors import ForgegitError
from .ratelimit import AdaptiveLimiter
from .records import ModelTokens, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_BACKOFF_ENV = "FORGEGIT_RETRY_BACKOFF"  # seconds before the first retry (doubles each time)
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}
OLLAMA_DEFAULT_CTX = 4096
# "exceed context window of 8192" (llama-cpp-python), "maximum context length is 8192 tokens" (OpenAI, vLLM)
_TOLD_WINDOW = re.compile(r"context (?:window|length) (?:of|is) (\d+)", re.I)
# Failures of one task's request, not of the run: the agent records the task as failed and goes on.
# (A context-length refusal is one too once the agent's conversation has grown: see agent.py.)
TASK_FAILURES = ("content_filter", "timeout")
# A 5xx whose message reads like one of these is the server refusing the request, not an outage:
# retrying sends the same request to the same refusal (llama-cpp-python answers 500 to a pydantic
# validation error, some servers 500 to an over-long prompt).
_REFUSAL = re.compile(
    r"validation error|validationerror|input should be|field required|unprocessable|"
    r"is not valid|invalid (?:value|type|request|param)|must be (?:a|an|of) ", re.I)
_CONTEXT_LENGTH = re.compile(
    r"context.{0,12}(?:length|window|size)|maximum context|too many tokens|prompt is too long|"
    r"exceeds? (?:the )?(?:model'?s? )?(?:context|maximum|max)|longer than the model", re.I)


class LLMError(ForgegitError):
    """A model call failed for good (after retries); `kind` says how."""

    def __init__(self, message: str, kind: str = "api") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ChatResult:
    """One assistant reply as a plain dict, why it stopped, and what it cost."""

    message: Message
    finish_reason: str
    usage: Usage
    cached: bool = False


@dataclass
class Endpoint:
    """Where the model lives: the SDK's own OPENAI_BASE_URL and OPENAI_API_KEY by default."""

    base_url: str = ""
    api_key: str = ""

    @classmethod
    def from_env(cls, base_url: Optional[str] = None, api_key: Optional[str] = None) -> "Endpoint":
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        check_base_url(url, "OPENAI_BASE_URL" if not base_url else "the endpoint")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            host = url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
            if host in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"):
                key = "sk-no-key-needed"  # local servers (Ollama, vLLM, llama.cpp) accept anything
            else:
                raise LLMError(f"OPENAI_API_KEY is not set (endpoint {url}): export it, or set OPENAI_BASE_URL to a local server", "auth")
        return cls(url.rstrip("/"), key)


def check_base_url(url: str, name: str = "OPENAI_BASE_URL") -> None:
    """Refuse at once a base URL that cannot be reached at all (no scheme or no host): retrying it
    would only wait, e.g. `OPENAI_BASE_URL=localhost:11434`."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url.strip())
        host, _ = parts.hostname, parts.port  # a port that is not a number raises ValueError
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        bare = url.strip().split("://", 1)[-1]
        raise LLMError(f"{name}={url!r} is not an http(s) URL with a host: write it in full, "
                       f"e.g. http://{bare or 'localhost:11434/v1'}", "config")


def wire_messages(messages: list[Message]) -> list[Message]:
    """messages as sent: a null content (an assistant turn that only called tools) becomes "".

    OpenAI accepts null there, llama-cpp-python's server answers 500 to it; "" is accepted by all."""
    if all(m.get("content") is not None for m in messages if isinstance(m, dict)):
        return messages
    return [{**m, "content": ""} if isinstance(m, dict) and m.get("content") is None else m for m in messages]


def _message_dict(message: Any) -> dict[str, Any]:
    d = message if isinstance(message, dict) else message.model_dump(exclude_none=True)
    out: dict[str, Any] = {"role": "assistant", "content": d.get("content")}
    calls = d.get("tool_calls") or []
    if calls:
        out["content"] = out["content"] or ""  # some servers refuse a null content sent back to them
        out["tool_calls"] = [
            {"id": c.get("id") or f"call_{i}", "type": "function",
             "function": {"name": (c.get("function") or {}).get("name", ""),
                          "arguments": (c.get("function") or {}).get("arguments") or "{}"}}
            for i, c in enumerate(calls)
        ]
    return out


class LLM:
    """Chat with one model. Safe to share between the tasks of one event loop."""

    def __init__(
        self,
        model: str,
        *,
        endpoint: Optional[Endpoint] = None,
        cache: Optional[ResponseCache] = None,
        use_cache: bool = True,
        prices: Optional[Mapping[str, Any]] = None,
        max_retries: int = 5,
        timeout: float = 300.0,
        limiter: Optional[AdaptiveLimiter] = None,
        backoff: Optional[float] = None,
        max_tokens: int = 0,
        tool_choice: str = "auto",
        context_window: int = 0,
        role: str = "agent",
        on_retry: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.model = model
        self.on_retry = on_retry  # told one line per retry, e.g. "retrying in 4s: connection refused"
        self._told: dict[str, float] = {}
        self.endpoint = endpoint or Endpoint.from_env()
        self.cache = cache
        self.use_cache = use_cache
        self.prices = dict(prices or {})
        self.max_retries = max_retries
        self.timeout = timeout
        self.limiter = limiter
        self.backoff = backoff if backoff is not None else _env_backoff()
        self.max_tokens = max_tokens  # most tokens of one reply; 0 sends none (the server decides)
        self.tool_choice = tool_choice  # sent whenever tools are; "" sends none
        self.context_window = context_window  # 0: ask the server (see context_limit)
        self.role = role  # "agent" or "optimizer": which settings an error names
        self.usage = Usage()
        self._client: Optional[openai.AsyncOpenAI] = None
        self._window: Optional[int] = context_window or None
        self._window_asked = bool(context_window)

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            # Retries are ours (so 429s can slow the whole run down), not the SDK's.
            self._client = openai.AsyncOpenAI(
                base_url=self.endpoint.base_url, api_key=self.endpoint.api_key,
                max_retries=0, timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _cost(self, model: str, prompt: int, completion: int, cached: int = 0) -> float:
        return cost_of(model, prompt, completion, self.prices, cached)

    async def chat(
        self,
        messages: list[Message],
        *,
        tools: Optional[list[ToolSchema]] = None,
        tool_choice: Optional[str | dict[str, object]] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = 0.0,
    ) -> ChatResult:
        """One chat completion, from the cache when the same deterministic request was made before."""
        model = model or self.model
        messages = wire_messages(messages)
        params: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            params["tools"] = tools
            # Some servers (llama-cpp-python's chatml-function-calling) ignore tools without it.
            choice = tool_choice if tool_choice is not None else (self.tool_choice or None)
            if choice is not None:
                params["tool_choice"] = choice
        if temperature is not None:
            params["temperature"] = temperature
        if self.max_tokens > 0:  # else a looping small model generates until the context is full
            params["max_tokens"] = self._reply_room(messages, tools)
        key = None
        if self.cache is not None:
            from .cache import is_deterministic, request_key
            if self.use_cache and is_deterministic(params):
                key = request_key(model, messages, tools, {k: v for k, v in params.items() if k not in ("model", "messages", "tools")})
                hit = self.cache.get(key)
                if hit is not None:
                    result = self._result(model, hit, cached=True)
                    self.cache.log(params, hit, error=None, duration=0.0, cached=True, usage=hit.get("usage"))
                    return result
        start = time.monotonic()
        try:
            raw = await self._call_with_retries(params)
        except LLMError as exc:
            if self.cache is not None:
                self.cache.log(params, None, error=str(exc), duration=time.monotonic() - start, cached=False, usage=None)
            raise
        if self.cache is not None:
            self.cache.log(params, raw, error=None, duration=time.monotonic() - start, cached=False, usage=raw.get("usage"))
            if key is not None and raw["choices"][0].get("finish_reason") in ("stop", "tool_calls"):
                self.cache.put(key, params, raw)
        return self._result(model, raw, cached=False)

    def _reply_room(self, messages: list[Message], tools: Optional[list[ToolSchema]]) -> int:
        """max_tokens, lowered where a known context window cannot hold the prompt and that many more
        (vLLM and OpenAI refuse prompt + max_tokens over the window)."""
        if not self._window:
            return self.max_tokens
        from .tokens import count_message_tokens, count_tokens
        prompt = count_message_tokens(messages) + (count_tokens(json.dumps(tools)) if tools else 0)
        room = self._window - int(prompt * 1.5) - 64  # our count is an estimate: the server may count more
        return max(min(self.max_tokens, 64), min(self.max_tokens, room))

    async def context_limit(self, model: Optional[str] = None) -> Optional[int]:
        """The model's context window in tokens: the `context_window` setting, else what the server
        reports (llama.cpp's /props, vLLM's and llama.cpp's /v1/models, Ollama's /api/show), else None.
        Asked once per client; a server that reports nothing costs a few quick 404s."""
        if self._window_asked:
            return self._window
        self._window_asked = True
        try:
            self._window = await asyncio.wait_for(_discover_window(self.client, self.endpoint.base_url, model or self.model), 10)
        except Exception:  # a window we cannot learn is an unknown window, never a failed run
            self._window = None
        return self._window

    def _hint(self) -> str:
        if self.role == "optimizer":
            return ("lower optimizer_context_tokens (or optimizer_max_tokens) in forgegit.toml, or set context_window "
                    "to the server's real context size")
        return ("the agent's conversation outgrew the model's context window: lower max_turns or max_output "
                "(or max_tokens) in forgegit.toml, or serve the model with a larger context")

    def _result(self, model: str, raw: dict[str, Any], *, cached: bool) -> ChatResult:
        choice = raw["choices"][0]
        u = raw.get("usage") or {}
        if cached:
            usage = Usage(cached_calls=1)
        else:
            p, c, hit = _count(u.get("prompt_tokens")), _count(u.get("completion_tokens")), cached_prompt_tokens(u)
            usage = Usage(prompt_tokens=p, completion_tokens=c, calls=1, cost=self._cost(model, p, c, hit),
                          cached_tokens=hit, models={model: ModelTokens(p, c, hit)})
        self.usage.add(usage)
        return ChatResult(_message_dict(choice.get("message") or {}), choice.get("finish_reason") or "stop", usage, cached)

    async def _call_with_retries(self, params: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                if self.limiter is not None:
                    async with self.limiter:
                        concurrency, start = self.limiter.in_flight, time.monotonic()
                        raw = await self._call_once(params)
                    # the latency tells the limiter whether more requests at once only queue up
                    usage = raw.get("usage")
                    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
                    self.limiter.succeeded(time.monotonic() - start, concurrency,
                                           tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None)
                else:
                    raw = await self._call_once(params)
                return raw
            except _Retry as r:
                attempt += 1
                if attempt > self.max_retries:
                    raise LLMError(f"{r.message} (gave up after {self.max_retries} retries)", r.kind) from None
                delay = r.retry_after if r.retry_after is not None else min(30.0, self.backoff * 2 ** (attempt - 1))
                delay *= 1 + random.random() * 0.1
                if self.limiter is not None and r.kind == "rate_limit":
                    self.limiter.throttled(delay)
                self._tell_retry(delay, attempt, r)
                await asyncio.sleep(delay)

    def _tell_retry(self, delay: float, attempt: int, r: "_Retry") -> None:
        """One line per retry; the same line from concurrent tasks within a second is said once."""
        if self.on_retry is None:
            return
        line = f"retrying in {_seconds(delay)}: {r.reason or r.message} (retry {attempt} of {self.max_retries})"
        now = time.monotonic()
        key = f"{attempt}:{r.reason or r.message}"
        if now - self._told.get(key, -10.0) < 1.0 + delay:
            return
        self._told[key] = now
        self.on_retry(line)

    async def _call_once(self, params: dict[str, Any]) -> dict[str, Any]:
        where = self.endpoint.base_url
        model = params["model"]
        try:
            # The SDK's documented escape hatch for raw requests: it keeps the SDK's HTTP stack and
            # error types but skips its per-call TypedDict transform of the body (a third of
            # forgegit's CPU per call): our params are plain JSON already.
            response = await self.client.post("/chat/completions", body=params, cast_to=_HTTP_RESPONSE)
            text = response.text
        except openai.AuthenticationError:
            raise LLMError(f"{where} rejected the API key (401): set OPENAI_API_KEY to a valid key", "auth") from None
        except openai.PermissionDeniedError as exc:
            raise LLMError(f"{where} refused access to model {model!r} (403): {_api_message(exc)}", "auth") from None
        except openai.NotFoundError:
            raise LLMError(f"model {model!r} not found at {where} (404): check --model / `model` in forgegit.toml and OPENAI_BASE_URL", "not_found") from None
        except openai.APIStatusError as exc:
            message = _api_message(exc)
            if _CONTEXT_LENGTH.search(message) and exc.status_code not in (429,):
                told = _TOLD_WINDOW.search(message)
                if told and not self.context_window:  # the refusal names the window: use it from now on
                    self._window, self._window_asked = int(told.group(1)), True
                raise LLMError(f"{where} answered {exc.status_code}: {message}: {self._hint()}", "context_length") from None
            if exc.status_code in RETRYABLE_STATUS and not (exc.status_code >= 500 and _REFUSAL.search(message)):
                kind = "rate_limit" if exc.status_code == 429 else "server"
                raise _Retry(f"{where} answered {exc.status_code}: {message}", kind, _retry_after(exc),
                             f"HTTP {exc.status_code} from {where}: {message[:100]}") from None
            raise LLMError(f"{where} answered {exc.status_code} (not retried: the server refused this request): {message}",
                           "bad_request") from None
        except openai.APITimeoutError:
            # Not retried: a local server goes on generating for an abandoned request, so a retry
            # only queues behind it. The task fails and the run goes on.
            raise LLMError(f"{where} gave no reply within {self.timeout:g}s: raise `timeout` in forgegit.toml (or --timeout), "
                           f"or lower max_tokens", "timeout") from None
        except openai.APIConnectionError as exc:
            reason = _connection_reason(exc)
            raise _Retry(f"cannot reach {where} ({reason}): is the server up? set OPENAI_BASE_URL", "connection",
                         None, f"{reason} ({where})") from None
        try:
            raw = safejson.loads(text)  # a body nested too deeply is bad JSON too, not a RecursionError
        except ValueError:
            raise _Retry(f"{where} returned a reply that is not valid JSON: {text[:80]!r}", "bad_response") from None
        if not isinstance(raw, dict) or not raw.get("choices"):
            raise _Retry(f"{where} returned a reply with no choices", "bad_response")
        finish = raw["choices"][0].get("finish_reason")
        if finish == "content_filter":
            raise _Retry(f"{where} refused the request (content filter)", "content_filter")
        return raw


async def _discover_window(client: openai.AsyncOpenAI, base_url: str, model: str) -> Optional[int]:
    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
    from openai._types import RequestOptions  # the SDK's own TypedDict for per-call options
    opts: RequestOptions = {"timeout": 5.0}

    async def get(url: str) -> Any:
        try:
            r = await client.get(url, cast_to=_HTTP_RESPONSE, options=opts)
            return json.loads(r.text)
        except Exception:
            return None

    def positive(v: object) -> Optional[int]:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None

    models = await get(f"{base_url}/models")
    if isinstance(models, dict):
        entries = [m for m in models.get("data") or [] if isinstance(m, dict)]
        mine = [m for m in entries if m.get("id") == model] or entries[:1]
        for m in mine:
            found = positive(m.get("max_model_len")) or positive(m.get("context_length")) or positive(m.get("n_ctx"))
            meta = m.get("meta")
            if not found and isinstance(meta, dict):
                found = positive(meta.get("n_ctx")) or positive(meta.get("n_ctx_train"))
            if found:
                if isinstance(meta, dict) and not positive(meta.get("n_ctx")):
                    # llama-server's meta gives the training context; /props gives the one it serves
                    props = await get(f"{root}/props")
                    served = _props_n_ctx(props)
                    found = served or found
                return found
    props = await get(f"{root}/props")  # llama.cpp's llama-server
    served = _props_n_ctx(props)
    if served:
        return served
    try:  # Ollama
        r = await client.post(f"{root}/api/show", body={"model": model}, cast_to=_HTTP_RESPONSE, options=opts)
        show = json.loads(r.text)
    except Exception:
        return None
    if isinstance(show, dict):
        num_ctx = re.search(r"(?m)^\s*num_ctx\s+(\d+)", str(show.get("parameters") or ""))
        if num_ctx:
            return int(num_ctx.group(1))
        info = show.get("model_info")
        if isinstance(info, dict):
            for k, v in info.items():
                trained = positive(v) if k.endswith(".context_length") else None
                if trained:  # without num_ctx Ollama serves its default window (4096), not the trained one
                    return min(trained, OLLAMA_DEFAULT_CTX)
    return None


def _props_n_ctx(props: object) -> Optional[int]:
    if not isinstance(props, dict):
        return None
    for where in (props, props.get("default_generation_settings")):
        if isinstance(where, dict):
            v = where.get("n_ctx")
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _count(value: object) -> int:
    """A token count from a server's usage object (anything else counts 0)."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


def cached_prompt_tokens(usage: object) -> int:
    """The prompt tokens a provider served from its prompt cache: OpenAI's (and vLLM's, llama.cpp's)
    `usage.prompt_tokens_details.cached_tokens`, or DeepSeek's `prompt_cache_hit_tokens`."""
    if not isinstance(usage, dict):
        return 0
    details = usage.get("prompt_tokens_details")
    hit = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return min(hit or _count(usage.get("prompt_cache_hit_tokens")), _count(usage.get("prompt_tokens")))


def _env_backoff() -> float:
    """First retry delay in seconds: FORGEGIT_RETRY_BACKOFF (e.g. 0.01 in tests), else 1."""
    value = os.environ.get(RETRY_BACKOFF_ENV, "")
    try:
        return max(0.0, float(value)) if value.strip() else 1.0
    except ValueError:
        raise LLMError(f"{RETRY_BACKOFF_ENV}={value!r}: expected seconds as a number, e.g. 0.5", "config") from None


class _Retry(Exception):
    def __init__(self, message: str, kind: str, retry_after: Optional[float] = None, reason: str = "") -> None:
        super().__init__(message)
        self.message, self.kind, self.retry_after, self.reason = message, kind, retry_after, reason


def _seconds(delay: float) -> str:
    """A delay for people: "4s", "1.5s", "0.01s"."""
    if delay >= 10:
        return f"{delay:.0f}s"
    return f"{delay:.2g}s" if delay < 1 else f"{delay:.1f}".rstrip("0").rstrip(".") + "s"


def _connection_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused", "unknown host ...")."""
    import errno
    import socket
    seen: set[int] = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror or cause})"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if "connection refused" in str(cause).lower():
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return str(exc.__cause__ or exc)[:120] or type(exc).__name__


def _retry_after(exc: openai.APIStatusError) -> Optional[float]:
    headers = exc.response.headers if exc.response is not None else {}
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) / (1000 if name.endswith("ms") else 1)
                return max(0.0, min(seconds, 120.0))
            except ValueError:
                return None
    return None


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
        if isinstance(inner, str):
            return inner[:200]
    return str(exc.message)[:200]
