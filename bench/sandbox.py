"""Cost of one sandboxed tool call: cold process, v0.1's warm worker, and the hardened warm worker.

cold:     spawn a fresh `python -c` process that imports the function file and calls it (what a
          process-per-call sandbox pays, without any isolation set-up);
v0.1:     one call through a started pool of forgegit 0.1's workers (deny-list mounts and namespaces,
          no Landlock, no seccomp), extracted from git at V01_REVISION and measured in this same run;
hardened: one call through today's pool (Landlock + seccomp + namespaces where allowed).
Start-up is the time to start a 2-worker pool. Run: python bench/sandbox.py [N]
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forgegit.sandbox import Limits, Sandbox

ROOT = Path(__file__).resolve().parent.parent
V01_REVISION = "ed53b73"  # the last commit before the hardened worker
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


async def warm(n: int) -> dict[str, object]:
    """Seconds per call through a warm pool of whichever forgegit is importable, and its start-up."""
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
        iso = getattr(sb, "isolation", None)
        return {"median": statistics.median(times), "p90": sorted(times)[int(0.9 * n)], "started": started,
                "isolation": iso.summary() if iso else "v0.1 (deny-list: namespaces and mounts, no Landlock/seccomp)"}


def v01(n: int) -> dict[str, object]:
    """warm(n) run by forgegit 0.1's sandbox, extracted from git into a temp dir."""
    with tempfile.TemporaryDirectory() as d:
        archive = subprocess.run(["git", "archive", V01_REVISION, "forgegit"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", d], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": d}
        out = subprocess.run([sys.executable, __file__, "--warm-only", str(n)], env=env, cwd=d,
                             capture_output=True, text=True, check=True)
        result: dict[str, object] = json.loads(out.stdout)
        return result


def main() -> None:
    if sys.argv[1:2] == ["--warm-only"]:
        print(json.dumps(asyncio.run(warm(int(sys.argv[2])))))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    c = statistics.median(cold(n))
    old = v01(n * 10)
    new = asyncio.run(warm(n * 10))
    w_old, w_new = float(old["median"]), float(new["median"])  # type: ignore[arg-type]
    print(f"sandbox call cost, median of {n} cold / {n * 10} warm calls (python {sys.version.split()[0]}, uid {os.getuid()})")
    print(f"hardened isolation: {new['isolation']}")
    print(f"{'mode':<40}{'median ms':>11}{'p90 ms':>9}{'start-up ms':>13}")
    print(f"{'cold: spawn python + import + call':<40}{c * 1000:>11.3f}")
    for label, r in (("warm, v0.1 worker (" + V01_REVISION + ")", old), ("warm, hardened worker", new)):
        print(f"{label:<40}{float(r['median']) * 1000:>11.3f}{float(r['p90']) * 1000:>9.3f}"  # type: ignore[arg-type]
              f"{float(r['started']) * 1000:>13.1f}")  # type: ignore[arg-type]
    print(f"{'ratio hardened / v0.1 (warm call)':<40}{w_new / w_old:>11.2f}x")
    print(f"{'ratio cold / hardened warm':<40}{c / w_new:>11.1f}x")
    print(f"hardened warm call under 1 ms: {'yes' if w_new < 0.001 else 'NO'}")


if __name__ == "__main__":
    main()
