"""Adaptive concurrency (AIMD): back off on rate limits, creep back up on success, never drop work."""
from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Optional


class AdaptiveLimiter:
    """An asyncio limiter whose limit halves on throttling and grows by one after `increase_after` successes.

    Use `async with limiter:` around each request; call `limiter.throttled(retry_after)` when the
    server answers 429 (new entrants then wait until retry_after has passed) and
    `limiter.succeeded()` after a good response. Waiters are served first come, first served.
    Throttles that arrive during a pause extend it but do not halve the limit again, so a burst
    of 429s from requests already in flight counts as one overload.
    """

    def __init__(self, max_concurrency: int, min_concurrency: int = 1, *, increase_after: int = 10) -> None:
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

    def succeeded(self) -> None:
        """A request went through: after `increase_after` in a row, allow one more at once."""
        self._successes += 1
        if self._successes >= self.increase_after and self.limit < self.max_concurrency:
            self.limit += 1
            self._successes = 0
            self._wake()

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
