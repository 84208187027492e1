"""What storing the agent conversations in git costs: stage, store, publish and load, per evaluation.

    python bench/conversations_store.py [--quick]

For evaluations of 100 / 500 / 2,000 tasks (each conversation ~5 KiB, compacted as forgegit stores
it), in a fresh repository: seconds to stage them, to write them as blobs and one tree
(`conversations.store`), to add the tree to refs/forgegit/conversations (`publish`) and to read
every one back for the prompt (`load`), with the bytes stored under the default budget
(`conversation_kb` = 2048). Target: storing and loading 2,000 conversations takes under 2 s each.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from forgegit import conversations  # noqa: E402

SIZES = [100, 500, 2000]
BUDGET_KB = 2048


def record(i: int) -> dict[str, object]:
    return {"task_id": f"task-{i:05d}", "question": f"What is the sum of the digits of {i * 7919}?",
            "messages": [{"role": "system", "content": "You solve tasks step by step."},
                         {"role": "user", "content": f"What is the sum of the digits of {i * 7919}?"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "digit_sum", "arguments": f'{{"n": {i}}}'}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "trace " * 700},
                         {"role": "assistant", "content": f"Final answer: {i % 50}"}]}


def measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        stage = repo / ".git" / "forgegit" / "trajectories" / ("a" * 32)
        t0 = time.perf_counter()
        for i in range(n):
            conversations.stage(stage, record(i))
        t1 = time.perf_counter()
        ids = [f"task-{i:05d}" for i in range(n)]
        tree = conversations.store(repo, stage, ids, BUDGET_KB * 1024)
        t2 = time.perf_counter()
        conversations.publish(repo, {"a" * 32: tree})
        t3 = time.perf_counter()
        loaded = conversations.load(repo, tree, ids)
        t4 = time.perf_counter()
        listing = subprocess.run(["git", "ls-tree", "-l", tree], cwd=repo, capture_output=True, text=True).stdout
        size = sum(int(line.split()[3]) for line in listing.splitlines())
        return {"tasks": n, "stored": len(loaded), "kib": size / 1024, "stage": t1 - t0, "store": t2 - t1,
                "publish": t3 - t2, "load": t4 - t3}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100 tasks only")
    sizes = SIZES[:1] if p.parse_args(argv).quick else SIZES
    print(f"conversations in git, budget {BUDGET_KB} KiB per evaluation")
    print("| tasks | stored | KiB stored | stage s | store s | publish s | load s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for n in sizes:
        m = measure(n)
        print(f"| {n:,} | {int(m['stored']):,} | {m['kib']:,.0f} | {m['stage']:.2f} | {m['store']:.2f} | "
              f"{m['publish']:.2f} | {m['load']:.2f} |")
        ok &= m["store"] < 2 and m["load"] < 2 and m["kib"] <= BUDGET_KB
    print(f"target: store and load under 2 s each, within the budget: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
