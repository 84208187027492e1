"""The model client: any OpenAI-compatible endpoint through the openai SDK, with retries,
rate-limit back-off, a response cache, usage and cost accounting, and a log of every call."""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import openai

try:  # openai >= 3 sends requests through httpx2, earlier versions through httpx
    from httpx2 import Response as _HTTP_RESPONSE
except ImportError:  # pragma: no cover
    from httpx import Response as _HTTP_RESPONSE  # type: ignore[no-redef, import-not-found, unused-ignore]

from .errors import ForgegitError
from .records import Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_BACKOFF_ENV = "FORGEGIT_RETRY_BACKOFF"  # seconds before the first retry (doubles each time)
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class LLMError(ForgegitError):
    """A model call failed for good (after retries); `kind` says how."""

    def __init__(self, message: str, kind: str = "api") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ChatResult:
    """One assistant reply as a plain dict, why it stopped, and what it cost."""

    message: dict[str, Any]
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
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            host = url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
            if host in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"):
                key = "sk-no-key-needed"  # local servers (Ollama, vLLM, llama.cpp) accept anything
            else:
                raise LLMError(f"OPENAI_API_KEY is not set (endpoint {url}): export it, or set OPENAI_BASE_URL to a local server", "auth")
        return cls(url.rstrip("/"), key)


def _message_dict(message: Any) -> dict[str, Any]:
    d = message if isinstance(message, dict) else message.model_dump(exclude_none=True)
    out: dict[str, Any] = {"role": "assistant", "content": d.get("content")}
    calls = d.get("tool_calls") or []
    if calls:
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
        cache: Any = None,
        use_cache: bool = True,
        prices: Optional[Mapping[str, Any]] = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        limiter: Any = None,
        backoff: Optional[float] = None,
    ) -> None:
        self.model = model
        self.endpoint = endpoint or Endpoint.from_env()
        self.cache = cache
        self.use_cache = use_cache
        self.prices = dict(prices or {})
        self.max_retries = max_retries
        self.timeout = timeout
        self.limiter = limiter
        self.backoff = backoff if backoff is not None else _env_backoff()
        self.usage = Usage()
        self._client: Optional[openai.AsyncOpenAI] = None

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

    def _cost(self, model: str, prompt: int, completion: int) -> float:
        try:
            from .cost import cost_of
        except ImportError:  # pragma: no cover
            return 0.0
        return cost_of(model, prompt, completion, self.prices)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: Optional[list[dict[str, Any]]] = None,
        tool_choice: Any = None,
        model: Optional[str] = None,
        temperature: Optional[float] = 0.0,
    ) -> ChatResult:
        """One chat completion, from the cache when the same deterministic request was made before."""
        model = model or self.model
        params: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            params["tools"] = tools
            if tool_choice is not None:
                params["tool_choice"] = tool_choice
        if temperature is not None:
            params["temperature"] = temperature
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

    def _result(self, model: str, raw: dict[str, Any], *, cached: bool) -> ChatResult:
        choice = raw["choices"][0]
        u = raw.get("usage") or {}
        if cached:
            usage = Usage(cached_calls=1)
        else:
            p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
            usage = Usage(prompt_tokens=p, completion_tokens=c, calls=1, cost=self._cost(model, p, c))
        self.usage.add(usage)
        return ChatResult(_message_dict(choice.get("message") or {}), choice.get("finish_reason") or "stop", usage, cached)

    async def _call_with_retries(self, params: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                if self.limiter is not None:
                    async with self.limiter:
                        raw = await self._call_once(params)
                    self.limiter.succeeded()
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
                await asyncio.sleep(delay)

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
            if exc.status_code in RETRYABLE_STATUS:
                kind = "rate_limit" if exc.status_code == 429 else "server"
                raise _Retry(f"{where} answered {exc.status_code}: {_api_message(exc)}", kind, _retry_after(exc)) from None
            raise LLMError(f"{where} answered {exc.status_code}: {_api_message(exc)}", "bad_request") from None
        except openai.APITimeoutError:
            raise _Retry(f"{where} timed out after {self.timeout:.0f}s", "timeout") from None
        except openai.APIConnectionError as exc:
            raise _Retry(f"cannot reach {where} ({exc.__cause__ or exc}): is the server up? set OPENAI_BASE_URL", "connection") from None
        try:
            raw = json.loads(text)
        except ValueError:
            raise _Retry(f"{where} returned a reply that is not valid JSON: {text[:80]!r}", "bad_response") from None
        if not isinstance(raw, dict) or not raw.get("choices"):
            raise _Retry(f"{where} returned a reply with no choices", "bad_response")
        finish = raw["choices"][0].get("finish_reason")
        if finish == "content_filter":
            raise _Retry(f"{where} refused the request (content filter)", "content_filter")
        return raw


def _env_backoff() -> float:
    """First retry delay in seconds: FORGEGIT_RETRY_BACKOFF (e.g. 0.01 in tests), else 1."""
    value = os.environ.get(RETRY_BACKOFF_ENV, "")
    try:
        return max(0.0, float(value)) if value.strip() else 1.0
    except ValueError:
        raise LLMError(f"{RETRY_BACKOFF_ENV}={value!r}: expected seconds as a number, e.g. 0.5", "config") from None


class _Retry(Exception):
    def __init__(self, message: str, kind: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.message, self.kind, self.retry_after = message, kind, retry_after


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
