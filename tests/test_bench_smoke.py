"""Smoke tests of the benchmarks: each bench/<name>.py --quick exits 0 and prints its table header.

No timing assertions (the machine is shared and noisy); the AutoGen side is skipped by the script
itself when its venv is missing, and the test then only checks the forgegit side and the skip line.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_bench(name: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FORGEGIT_TEST_"))}
    proc = subprocess.run([sys.executable, str(BENCH / name), "--quick", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return re.sub(r"[ \t]+", " ", proc.stdout)  # table cells are padded: compare with single spaces


def test_eval_concurrency() -> None:
    out = run_bench("eval_concurrency.py", "--tasks", "16")
    assert "| concurrency | tasks | calls | wall s | critical path s | ratio |" in out
    assert "target ratio <= 1.2 at concurrency 16:" in out


def test_overhead() -> None:
    out = run_bench("overhead.py")
    assert "| tasks | functions | model calls | run wall s |" in out
    assert "| notes | eval own note s | eval scan s |" in out


def test_cache_resume() -> None:
    out = run_bench("cache_resume.py", "--tasks", "6")
    assert "| scenario" in out and "crash at after-eval + resume" in out
    assert "NO" not in out.split("| scenario", 1)[1]  # every resumed run ends with the fresh run's functions


def test_autogen_compare() -> None:
    out = run_bench("autogen_compare.py", "--tasks", "6")
    assert "| system" in out and "| wall s | model calls | prompt tokens |" in out
    assert "forgegit c=1" in out
    assert "forgegit / autogen, totals" in out or "autogen: skipped:" in out


def test_sandbox() -> None:
    """bench/sandbox.py measures a cold call, v0.1's warm worker and today's, and prints their ratios."""
    out = run_bench("sandbox.py")
    assert "cold: spawn python + import + call" in out
    assert "ratio hardened / v0.1 (warm call)" in out and "hardened warm call under 1 ms:" in out


def test_faults() -> None:
    """bench/faults.py runs fault tests and prints one row per fault with 0 data lost."""
    out = run_bench("faults.py")
    assert "fault" in out and "data lost" in out and "pytest:" in out


def test_run_all_covers_every_bench_script() -> None:
    """bench/run_all.py runs every bench/<name>.py script (helpers start with _) but those that need a real
    model, none forgotten."""
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    scripts = sorted(p.name for p in BENCH.glob("[!_]*.py") if p.name not in ("run_all.py", *run_all.NEEDS_A_MODEL))
    assert sorted(run_all.BENCHMARKS) == scripts


def test_prompt_scale() -> None:
    """The optimizer-prompt bench prints its table and meets its target at the quick sizes."""
    out = run_bench("prompt_scale.py")
    assert "| tasks | failed | prompt tokens | full conversations |" in out and "| 100 |" in out
    assert "within the budget: PASS" in out


def test_conversations_store() -> None:
    """The conversation-storage bench prints its table and stores within the budget."""
    out = run_bench("conversations_store.py")
    assert "| tasks | stored | KiB stored | stage s | store s | publish s | load s |" in out and "| 100 | 100 |" in out


def test_prompt_cache() -> None:
    """The prompt-cache benchmark prints the cached share as sent and with the task first, and forgegit's
    own count of the cached tokens (from the server's usage reports) matches the server's."""
    out = run_bench("prompt_cache.py")
    assert "| requests | n | prompt tokens | cached (as sent) | share | cached (task first) | share | share (stamped" in out
    sent = re.search(r"\| all \| \d+ \| ([\d,]+) \| ([\d,]+) \|", out)
    recorded = re.search(r"counted by forgegit\): ([\d,]+) of ([\d,]+) prompt tokens cached", out)
    assert sent and recorded and sent.groups() == (recorded.group(2), recorded.group(1))
    assert int(sent.group(2).replace(",", "")) > 0


def test_math_grader() -> None:
    """The math-verify comparison prints both graders' rates and times, the worst case and the rule's outcome
    (math-verify is in the dev extra only; without it the bench says it skipped)."""
    out = run_bench("math_grader.py")
    if importlib.util.find_spec("math_verify") is None:
        assert "math_grader: skipped: math-verify is not installed" in out
        pytest.skip("math-verify is not installed")
    assert "| grader | must-pass passed | rate | must-fail accepted | false-accept rate | median ms | p99 ms |" in out
    assert re.search(r"\| forgegit \| (\d+)/\1 \| 100\.0% \| 0/\d+ \|", out)  # forgegit's own checker: all right
    assert "ratio math-verify / forgegit time per judgment: median" in out and "worst case: forgegit" in out
    assert "rule (adopt if both):" in out


def test_git_reads() -> None:
    """bench/git_reads.py reads the same notes and conversations with today's forgegit and the baseline's,
    and prints both times, their ratio and why every note is read in bulk."""
    out = run_bench("git_reads.py")
    if "git_reads: skipped:" in out:  # a shallow clone (actions/checkout's default) lacks the baseline revision
        pytest.skip("the baseline revision is not in this checkout's history")
    assert "| read | f542cfc (by hand) ms | today (GitPython) ms | today / f542cfc | same data |" in out
    assert "| NO |" not in out and out.count("| yes |") == 4  # both read the same data
    assert "every note's bytes, today: git.read_blobs" in out and "target: same data" in out


@pytest.mark.parametrize("name", ["eval_concurrency.py", "overhead.py", "cache_resume.py", "autogen_compare.py",
                                  "sandbox.py", "faults.py", "prompt_scale.py", "conversations_store.py",
                                  "attribution.py", "prompt_cache.py", "math_grader.py", "git_reads.py", "run_all.py"])
def test_help(name: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / name), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage" in proc.stdout.lower()
