"""Adaptive concurrency: never above the limit, backs off on 429s, recovers, never drops work."""
from __future__ import annotations

import asyncio

import pytest

from forgegit.ratelimit import AdaptiveLimiter


async def _hold(
    limiter: AdaptiveLimiter, release: asyncio.Event, entered: list[int], i: int, seen: list[int] | None = None
) -> None:
    async with limiter:
        entered.append(i)
        if seen is not None:
            seen.append(limiter.in_flight)
        await release.wait()


def test_peak_in_flight_never_exceeds_max_and_all_tasks_complete() -> None:
    """100 requests through a limit of 5: all finish, at most 5 at once, and the limit is actually used."""
    limiter = AdaptiveLimiter(5)
    done: list[int] = []

    async def work(i: int) -> None:
        async with limiter:
            assert limiter.in_flight <= 5
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            done.append(i)

    async def main() -> None:
        await asyncio.gather(*(work(i) for i in range(100)))

    asyncio.run(main())
    assert sorted(done) == list(range(100))
    assert limiter.peak == 5 and limiter.in_flight == 0


def test_throttle_halves_limit_and_new_entrants_wait_retry_after() -> None:
    """After a 429 with retry_after=0.05 s, the limit halves and the next request waits out the pause."""
    limiter = AdaptiveLimiter(8)

    async def main() -> float:
        async with limiter:
            limiter.throttled(0.05)
        assert limiter.limit == 4
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with limiter:
            return loop.time() - start

    waited = asyncio.run(main())
    assert waited >= 0.045


def test_throttle_without_retry_after_only_halves() -> None:
    """A 429 without Retry-After shrinks concurrency but adds no pause; the limit never drops below min."""
    limiter = AdaptiveLimiter(8, min_concurrency=3)

    async def main() -> None:
        limiter.throttled(None)
        assert limiter.limit == 4
        limiter.throttled()
        assert limiter.limit == 3
        limiter.throttled()
        assert limiter.limit == 3
        async with limiter:
            assert limiter.in_flight == 1

    asyncio.run(main())
    assert limiter.throttles == 3


def test_a_burst_of_throttles_during_one_pause_halves_once() -> None:
    """Several in-flight requests hitting 429 together count as one overload, not a collapse to 1."""
    limiter = AdaptiveLimiter(16)

    async def main() -> None:
        for _ in range(5):
            limiter.throttled(0.05)

    asyncio.run(main())
    assert limiter.limit == 8


def test_limit_recovers_after_successes_up_to_max() -> None:
    """After backing off, every `increase_after` successes allow one more concurrent request, capped at max."""
    limiter = AdaptiveLimiter(4, increase_after=3)

    async def main() -> None:
        limiter.throttled()
        limiter.throttled()
        assert limiter.limit == 1
        for _ in range(3):
            limiter.succeeded()
        assert limiter.limit == 2
        for _ in range(30):
            limiter.succeeded()
        assert limiter.limit == 4

    asyncio.run(main())


def test_waiting_tasks_obey_the_reduced_limit_and_still_all_run() -> None:
    """Queued requests respect the halved limit while throttled, then all complete once released."""
    limiter = AdaptiveLimiter(4)

    async def main() -> list[int]:
        release = asyncio.Event()
        entered: list[int] = []
        seen: list[int] = []
        tasks = [asyncio.create_task(_hold(limiter, release, entered, i, seen)) for i in range(10)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert limiter.in_flight == 4 and limiter.waiting == 6
        limiter.throttled(0.02)
        assert limiter.limit == 2
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        assert max(seen[4:]) <= 2  # everything admitted after the 429 respects the halved limit
        return entered

    entered = asyncio.run(main())
    assert sorted(entered) == list(range(10))
    assert entered[:4] == [0, 1, 2, 3]  # first come, first served
    assert limiter.peak == 4 and limiter.in_flight == 0


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    """A request cancelled while queued frees its place; the limiter still admits the others."""
    limiter = AdaptiveLimiter(1)

    async def main() -> None:
        release = asyncio.Event()
        entered: list[int] = []
        first = asyncio.create_task(_hold(limiter, release, entered, 0))
        await asyncio.sleep(0)
        queued = asyncio.create_task(_hold(limiter, release, entered, 1))
        last = asyncio.create_task(_hold(limiter, release, entered, 2))
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(first, last), timeout=10)
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert entered == [0, 2] and limiter.in_flight == 0

    asyncio.run(main())


def test_invalid_bounds_are_rejected() -> None:
    """A limiter with no room for work is a configuration bug."""
    with pytest.raises(ValueError):
        AdaptiveLimiter(0)
    with pytest.raises(ValueError):
        AdaptiveLimiter(2, min_concurrency=3)


# ------------------------------------------ latency that grows with concurrency (a one-at-a-time server)

def test_latency_growing_with_concurrency_lowers_the_limit() -> None:
    limiter = AdaptiveLimiter(8)
    for c in range(1, 9):  # a serial server: the c-th request waits for the c-1 ahead of it
        limiter.succeeded(6.0 * c, c)
    assert limiter.limit <= 2 and limiter.latency_backoffs == 1


def test_a_server_with_four_slots_keeps_at_least_four_at_once() -> None:
    limiter = AdaptiveLimiter(8)
    for _ in range(5):
        for c in range(1, 9):
            limiter.succeeded(6.0 * max(1, c / 4), c)  # flat up to 4 at once, then queueing
    assert limiter.limit >= 4


def test_latency_that_does_not_follow_concurrency_keeps_the_limit() -> None:
    import random
    rng = random.Random(1)
    limiter = AdaptiveLimiter(8)
    for i in range(300):  # a hosted API: short and long replies, busy and quiet moments, at any concurrency
        tokens = rng.randint(1, 1000)
        limiter.succeeded((0.5 + tokens * 0.015) * rng.uniform(1.0, 2.5), rng.randint(1, 8), tokens)
    assert limiter.limit == 8 and limiter.latency_backoffs == 0


def test_successes_without_latency_still_only_grow_the_limit() -> None:
    limiter = AdaptiveLimiter(4)
    asyncio.run(_throttle(limiter))
    for _ in range(40):
        limiter.succeeded()
    assert limiter.limit == 4


async def _throttle(limiter: AdaptiveLimiter) -> None:
    limiter.throttled()
