"""Cost of one sandboxed tool call: cold process, v0.1's warm worker, and the hardened warm worker.

cold:     spawn a fresh `python -c` process that imports the function file and calls it (what a
          process-per-call sandbox pays, without any isolation set-up);
v0.1:     one call through a started pool of forgegit 0.1's workers (deny-list mounts and namespaces,
          no Landlock, no seccomp), extracted from git at V01_REVISION and measured in this same run;
hardened: one call through today's pool (Landlock + seccomp + namespaces where allowed).
Both warm kinds run at once in two processes and are measured in interleaved rounds, so a shared
machine's drifting load hits both alike. Start-up is the time to start a 2-worker pool.
Run: python bench/sandbox.py [N] [--quick]
"""
from __future__ import annotations

import argparse
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


async def serve() -> None:
    """`--serve`: start a pool of whichever forgegit is importable, then answer lines "N" on stdin with
    the seconds of N calls (JSON). The parent interleaves rounds of two such servers, so load that
    drifts on a shared machine hits both alike."""
    t0 = time.perf_counter()
    async with Sandbox({"digit_sum.py": SOURCE}, Limits(), workers=2) as sb:
        started = time.perf_counter() - t0
        await sb.call("digit_sum", {"n": 1})
        iso = getattr(sb, "isolation", None)
        info = iso.summary() if iso else "v0.1 (deny-list: namespaces and mounts, no Landlock, no seccomp)"
        print(json.dumps({"started": started, "isolation": info}), flush=True)
        for line in sys.stdin:
            times = []
            for _ in range(int(line)):
                t0 = time.perf_counter()
                out = await sb.call("digit_sum", {"n": 987654321})
                times.append(time.perf_counter() - t0)
                assert out.ok and out.output == "45", out
            print(json.dumps(times), flush=True)


class Server:
    """A `--serve` subprocess, of today's forgegit or of one extracted from git at a revision."""

    def __init__(self, revision: str = "") -> None:
        self.tmp = tempfile.TemporaryDirectory()
        env, cwd = dict(os.environ), ROOT
        if revision:
            archive = subprocess.run(["git", "archive", revision, "forgegit"], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", self.tmp.name], input=archive.stdout, check=True)
            env["PYTHONPATH"], cwd = self.tmp.name, Path(self.tmp.name)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], env=env, cwd=cwd, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info = json.loads(self._line())
        self.times: list[float] = []

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the benchmark server died"
        return line

    def round(self, n: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        self.times += json.loads(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()
        self.tmp.cleanup()


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve())
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=30, help="calls per measurement (default 30)")
    ap.add_argument("--quick", action="store_true", help="smoke-test size: 4 calls, 2 rounds")
    args = ap.parse_args()
    n, rounds = (4, 2) if args.quick else (args.n, 20)
    c = statistics.median(cold(n))
    old, new = Server(V01_REVISION), Server()
    try:
        for _ in range(rounds):  # interleaved rounds of n/2 calls each
            for server in (old, new):
                server.round(max(1, n // 2))
    finally:
        old.close()
        new.close()
    w_old, w_new = statistics.median(old.times), statistics.median(new.times)
    print(f"sandbox call cost, median of {n} cold / {len(new.times)} warm calls per worker kind, "
          f"in {rounds} interleaved rounds (python {sys.version.split()[0]}, uid {os.getuid()})")
    print(f"hardened isolation: {new.info['isolation']}")
    print(f"{'mode':<40}{'median ms':>11}{'p90 ms':>9}{'start-up ms':>13}")
    print(f"{'cold: spawn python + import + call':<40}{c * 1000:>11.3f}")
    for label, server in (("warm, v0.1 worker (" + V01_REVISION + ")", old), ("warm, hardened worker", new)):
        p90 = sorted(server.times)[int(0.9 * len(server.times))]
        print(f"{label:<40}{statistics.median(server.times) * 1000:>11.3f}{p90 * 1000:>9.3f}"
              f"{float(server.info['started']) * 1000:>13.1f}")
    print(f"{'ratio hardened / v0.1 (warm call)':<40}{w_new / w_old:>11.2f}x")
    print(f"{'ratio cold / hardened warm':<40}{c / w_new:>11.1f}x")
    print(f"hardened warm call under 1 ms: {'yes' if w_new < 0.001 else 'NO'}")


if __name__ == "__main__":
    main()
