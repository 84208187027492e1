"""What a crash costs: a training run killed part-way and resumed vs a fresh full run, in model calls.

Every run is `python -m forgegit train` as a subprocess (what a user runs) on a fresh copy of the
scenario (T digit-sum tasks; epoch 1 adds digit_sum: kept; epoch 2 breaks it: reverted; epoch 3
adds a useless word_count: reverted; patience 2 stops the run). Model calls are counted on the
scripted server (its own process, no latency).
    fresh             : one uninterrupted run
    repeat            : the same run again in the same repository (new run id): recorded results in
                        git notes + the response cache should make it (almost) free
    crash at P + resume: FORGEGIT_TEST_CRASH_AT=P kills the run with SIGKILL at step P of epoch 1;
                        `forgegit train --resume` finishes it. extra = crashed + resumed - fresh.
Run: python bench/cache_resume.py [--quick] [--tasks N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import RemoteServer, forgegit_cli, git, machine, make_repo, make_tasks, table

HEADER = ["scenario", "calls (agent+optimizer)", "resumed run calls", "total calls", "extra vs fresh",
          "same final functions"]


def _calls(server: RemoteServer) -> dict[str, int]:
    by = server.stats()["by_model"]
    return {"agent": sum(v for k, v in by.items() if "agent" in k), "optimizer": sum(v for k, v in by.items() if "optimizer" in k)}


def _delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a[k] for k in b}


def _fmt(d: dict[str, int]) -> str:
    return f"{d['agent'] + d['optimizer']} ({d['agent']}+{d['optimizer']})"


def _train(repo: Path, server: RemoteServer, *args: str, crash_at: str = "") -> tuple[dict[str, int], int]:
    before = _calls(server)
    proc = forgegit_cli(repo, server, "train", *args, crash_at=crash_at)
    if not crash_at and proc.returncode != 0:
        raise RuntimeError(f"forgegit train {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return _delta(before, _calls(server)), proc.returncode


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 tasks, one crash point (smoke test)")
    p.add_argument("--tasks", type=int, default=0)
    a = p.parse_args(argv)
    n = a.tasks or (12 if a.quick else 50)
    points = ["after-eval"] if a.quick else ["after-optimizer", "after-commit", "after-eval", "after-note",
                                             "during-revert", "after-record"]
    print(f"# cache_resume: {n} tasks, 3 epochs (kept, reverted, reverted); {machine()}")
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="fg-bench-resume-") as d, RemoteServer(0.0) as server:
        tasks = make_tasks(n)
        repo = make_repo(Path(d) / "fresh", tasks=tasks)
        fresh, _ = _train(repo, server, "--run-id", "fresh")
        fresh_total = sum(fresh.values())
        fresh_tree = git(repo, "rev-parse", "forgegit/train/fresh:functions")
        rows.append(["fresh", _fmt(fresh), "", fresh_total, 0, "yes"])
        again, _ = _train(repo, server, "--run-id", "again")
        same = git(repo, "rev-parse", "forgegit/train/again:functions") == fresh_tree
        rows.append(["repeat (same repo)", _fmt(again), "", sum(again.values()), sum(again.values()) - fresh_total,
                     "yes" if same else "NO"])
        for point in points:
            repo = make_repo(Path(d) / f"crash-{point}", tasks=tasks)
            crashed, rc = _train(repo, server, "--run-id", "r", crash_at=point)
            if rc != -9:
                rows.append([f"crash at {point}", f"not killed (exit {rc})", "", "", "", ""])
                continue
            resumed, _ = _train(repo, server, "--resume", "--run-id", "r")
            total = sum(crashed.values()) + sum(resumed.values())
            same = git(repo, "rev-parse", "forgegit/train/r:functions") == fresh_tree
            rows.append([f"crash at {point} + resume", _fmt(crashed), _fmt(resumed), total, total - fresh_total,
                         "yes" if same else "NO"])
            print(f"  {point}: {total} calls", file=sys.stderr, flush=True)
    print(table(HEADER, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
