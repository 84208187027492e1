"""Adaptive concurrency (AIMD): back off on rate limits and on latency that grows with concurrency,
creep back up on success, never drop work."""
from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from types import TracebackType
from typing import Optional


QUEUEING = 0.3  # parallelism under this share of the concurrency: requests mostly queue


class AdaptiveLimiter:
    """An asyncio limiter whose limit halves on throttling and grows by one after `increase_after` successes.

    Use `async with limiter:` around each request; call `limiter.throttled(retry_after)` when the
    server answers 429 (new entrants then wait until retry_after has passed) and
    `limiter.succeeded()` after a good response. Waiters are served first come, first served.
    Throttles that arrive during a pause extend it but do not halve the limit again, so a burst
    of 429s from requests already in flight counts as one overload.

    `succeeded(latency, concurrency, tokens)` also feeds a latency check. Each request's latency
    (per reply token plus a fixed 32 for the time to the first token, when tokens are known) is
    compared with the fastest in the recent window, the server's unqueued service time. Requests
    that took c times that with c in flight went through one at a time: c * base / latency is the
    parallelism the server really has. Every `min_samples` requests the median of that estimate is
    taken; when it is under 0.3 of the median concurrency (latency grew at least three times as
    fast as concurrency was worth), the limit drops to it (at least min_concurrency). So a
    one-at-a-time server (llama.cpp with one slot) is held near one request at once, while a
    hosted API whose replies are long and short at any concurrency keeps its limit.
    """

    def __init__(self, max_concurrency: int, min_concurrency: int = 1, *, increase_after: int = 10,
                 window: int = 64, min_samples: int = 6) -> None:
        if max_concurrency < 1 or not 1 <= min_concurrency <= max_concurrency:
            raise ValueError(f"need 1 <= min_concurrency <= max_concurrency, got {min_concurrency} and {max_concurrency}")
        if increase_after < 1:
            raise ValueError(f"increase_after must be at least 1, got {increase_after}")
        self.max_concurrency = max_concurrency
        self.min_concurrency = min_concurrency
        self.increase_after = increase_after
        self.limit = max_concurrency
        self.in_flight = 0
        self.peak = 0
        self.throttles = 0
        self._successes = 0
        self._resume_at = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self.latency_backoffs = 0  # times the limit dropped because latency grew with concurrency
        self.min_samples = min_samples
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        self._since_backoff = 0

    @property
    def waiting(self) -> int:
        """How many tasks are queued for a slot."""
        return sum(1 for f in self._waiters if not f.done())

    def _now(self) -> float:
        return self._loop.time() if self._loop else 0.0

    def _paused(self) -> bool:
        return self._now() < self._resume_at

    def _can_enter(self) -> bool:
        return self.in_flight < self.limit and not self._paused()

    def _enter(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served)."""
        self._loop = asyncio.get_running_loop()
        if not self._waiters and self._can_enter():
            self._enter()
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        self._wake()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was granted just as we were cancelled: hand it on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back and let the next waiter in."""
        if self.in_flight <= 0:
            raise RuntimeError("AdaptiveLimiter.release() called more times than acquire()")
        self.in_flight -= 1
        self._wake()

    def throttled(self, retry_after: Optional[float] = None) -> None:
        """The server said slow down: halve the limit and hold new entrants for retry_after seconds."""
        self.throttles += 1
        self._successes = 0
        if not self._paused():
            self.limit = max(self.min_concurrency, self.limit // 2)
        if retry_after is not None and retry_after > 0:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._resume_at = max(self._resume_at, self._now() + retry_after)

    def succeeded(self, latency: Optional[float] = None, concurrency: Optional[int] = None,
                  tokens: Optional[int] = None) -> None:
        """A request went through (in latency seconds, with concurrency requests in flight as it went in,
        tokens long): back off if latency grows with concurrency, else after `increase_after` in a row
        allow one more at once."""
        if latency is not None and concurrency is not None and concurrency >= 1 and latency > 0:
            cost = latency / (max(0, tokens) + 32) if tokens is not None else latency
            self._samples.append((concurrency, cost))
            self._since_backoff += 1
            knee = self._knee()
            if knee is not None and knee < self.limit:
                self.limit = max(self.min_concurrency, knee)
                self.latency_backoffs += 1
                self._successes = 0
                return
        self._successes += 1
        if self._successes >= self.increase_after and self.limit < self.max_concurrency:
            self.limit += 1
            self._successes = 0
            self._wake()

    def _knee(self) -> Optional[int]:
        """The parallelism the server shows, when latency grows with concurrency; else None."""
        if self._since_backoff < self.min_samples:
            return None  # judged once per min_samples requests
        self._since_backoff = 0
        base = min(cost for _, cost in self._samples)
        recent = list(self._samples)[-self.min_samples:]
        parallel = statistics.median(c * base / cost for c, cost in recent)
        if parallel >= QUEUEING * statistics.median(c for c, _ in recent):
            return None
        return max(1, math.ceil(parallel))

    def _wake(self) -> None:
        """Hand free slots to waiters in order; if paused, come back when the pause ends."""
        while self._waiters and self._can_enter():
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self._enter()
            fut.set_result(None)
        if self._waiters and self._paused() and self._loop is not None and self._timer is None:
            self._timer = self._loop.call_at(self._resume_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    async def __aenter__(self) -> "AdaptiveLimiter":
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.release()
