"""Cold vs warm cost of one sandboxed tool call.

cold: spawn a fresh `python -c` process that imports the function file and calls it (what a
      process-per-call sandbox pays, without any isolation set-up);
warm: one call through a started `Sandbox` pool (isolation already paid at worker start).
Run: /work/venv/bin/python bench/sandbox.py [N]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

from forgegit.sandbox import Limits, Sandbox

SOURCE = b'''"""Sum of the digits of n."""
import fractions, json, math, re


def digit_sum(n: int) -> int:
    """Sum of the digits of n."""
    return sum(int(c) for c in str(n))
'''
CODE = "import sys; sys.path.insert(0, sys.argv[1]); from digit_sum import digit_sum; print(digit_sum(987654321))"


def cold(n: int) -> list[float]:
    """Seconds per call when every call spawns and imports from scratch."""
    times = []
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "digit_sum.py"), "wb") as f:
            f.write(SOURCE)
        for _ in range(n):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-s", "-B", "-c", CODE, d], capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - t0)
            assert out.stdout.strip() == "45"
    return times


async def warm(n: int) -> tuple[list[float], float, Sandbox]:
    """Seconds per call through a warm pool, and the pool's start-up time."""
    t0 = time.perf_counter()
    async with Sandbox({"digit_sum.py": SOURCE}, Limits(), workers=2) as sb:
        started = time.perf_counter() - t0
        await sb.call("digit_sum", {"n": 1})
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            out = await sb.call("digit_sum", {"n": 987654321})
            times.append(time.perf_counter() - t0)
            assert out.ok and out.output == "45", out
        return times, started, sb


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    c = statistics.median(cold(n))
    w_times, started, sb = asyncio.run(warm(n * 10))
    w = statistics.median(w_times)
    print(f"sandbox call cost, median of {n} cold / {n * 10} warm calls (python {sys.version.split()[0]})")
    print(f"isolation: network={sb.network_isolated} pid={sb.pid_isolated} dropped={sb.privileges_dropped}")
    print(f"{'mode':<34}{'median ms':>12}")
    print(f"{'cold: spawn python + import + call':<34}{c * 1000:>12.2f}")
    print(f"{'warm: call through the pool':<34}{w * 1000:>12.2f}")
    print(f"{'pool start-up (2 workers, once)':<34}{started * 1000:>12.2f}")
    print(f"{'ratio cold / warm':<34}{c / w:>12.1f}x")


if __name__ == "__main__":
    main()
