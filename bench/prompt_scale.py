"""What the optimizer sees at scale: prompt tokens and full conversations for 20 / 100 / 500 / 2,000 tasks.

    python bench/prompt_scale.py [--quick] [--budget 12000] [--seed 0]

Each size is an evaluation of generated digit-sum tasks (three in five fail, of four failure kinds,
with varied checker feedback and functions called), each task with a recorded conversation of
about 700 tokens. The prompt is built by forgegit's own `build_prompt` with the default budget.
Printed per size: the prompt's tokens, how many failed tasks the optimizer sees with their whole
conversation, how many more by header only, and how many failure kinds / feedback shapes / functions
the full conversations cover. Target: at every size, at least 3 full conversations of failed tasks,
covering every failure kind present, within the budget.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from forgegit.prompt import build_prompt  # noqa: E402
from forgegit.records import EvalResult, TaskResult, Usage  # noqa: E402
from forgegit.selection import feedback_shape  # noqa: E402
from forgegit.tokens import count_message_tokens  # noqa: E402

SIZES = [20, 100, 500, 2000]
FUNCTIONS = {
    "digit_sum.py": b'"""Digit sums."""\n\n\ndef digit_sum(n: int) -> int:\n    """Sum of the digits.\n\n'
                    b'    Args:\n        n: The number.\n    """\n    return sum(int(d) for d in str(abs(n))[1:])\n',
    "add.py": b'"""Adding."""\n\n\ndef add(a: float, b: float) -> float:\n    """Add two numbers.\n\n'
              b'    Args:\n        a: First.\n        b: Second.\n    """\n    return a + b\n',
}
KINDS = ["wrong_answer"] * 6 + ["no_answer", "turn_limit", "agent_error"]


def make_eval(n: int, seed: int) -> tuple[EvalResult, dict[str, list[dict[str, Any]]]]:
    """An evaluation of n tasks (60% failed) and each task's conversation."""
    rng = random.Random(seed)
    results, conversations = [], {}
    for i in range(n):
        x = rng.randrange(10 ** 3, 10 ** 9)
        tid = f"digits-{i:05d}"
        passed = rng.random() < 0.4
        kind = None if passed else rng.choice(KINDS)
        fn = rng.choice(["digit_sum", "digit_sum", "add", "python"])
        expected = str(sum(map(int, str(x))))
        got = expected if passed else str(int(expected) - int(str(x)[0]))
        feedback = "" if passed else rng.choice([
            f"expected {expected}, got {got}", f"expected {expected}, got {got} (off by the first digit)",
            "answer not in \\boxed{}", f"no final answer after {rng.randint(3, 8)} turns",
            f"the tool raised ValueError: invalid literal for int() with base 10: '{x}a'"])
        results.append(TaskResult(tid, passed, got, expected, feedback, kind))
        conversations[tid] = [
            {"role": "system", "content": "You solve tasks step by step."},
            {"role": "user", "content": f"What is the sum of the digits of {x}?"},
            {"role": "assistant", "content": "Let me compute it. " * 20, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": fn, "arguments": f'{{"n": {x}}}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": f"{got} " + "trace line " * 150},
            {"role": "assistant", "content": "The function says so. " * 30 + f"Final answer: {got}"},
        ]
    ev = EvalResult("k" * 32, "rev", "tree", "tasks.jsonl", "h", "m", sum(r.passed for r in results), n,
                    Usage(), results)
    return ev, conversations


def measure(n: int, budget: int, seed: int) -> dict[str, Any]:
    ev, conversations = make_eval(n, seed)
    t0 = time.perf_counter()
    messages = build_prompt(FUNCTIONS, ev, conversations, [], max_actions=3, context_tokens=budget)
    seconds = time.perf_counter() - t0
    user = messages[1]["content"]
    failed = {r.task_id: r for r in ev.results if not r.passed}
    full, headers = [], 0
    for block in re.split(r"\n(?=### Task )", user):
        m = re.match(r"### Task (\S+): FAILED", block)
        if not m:
            continue
        headers += 1
        if "\nconversation:\n" in block and "[assistant calls]" in block:
            full.append(failed[m.group(1)])
    return {
        "tasks": n, "failed": len(failed), "tokens": count_message_tokens(messages), "full": len(full),
        "headers_only": headers - len(full), "kinds": len({r.failure for r in full}),
        "kinds_present": len({r.failure for r in failed.values()}),
        "shapes": len({feedback_shape(r.feedback) for r in full}),
        "functions": len({conversations[r.task_id][2]["tool_calls"][0]["function"]["name"] for r in full}),
        "summary": "by failure kind:" in user, "seconds": seconds,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="20 and 100 tasks only")
    p.add_argument("--budget", type=int, default=12000, help="optimizer_context_tokens (default 12000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    print(f"optimizer prompt at scale, budget {args.budget:,} tokens, seed {args.seed}")
    print("| tasks | failed | prompt tokens | full conversations | headers only | kinds (of present) "
          "| feedback shapes | functions | summary of the rest | build s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    ok = True
    for n in sizes:
        m = measure(n, args.budget, args.seed)
        print(f"| {m['tasks']:,} | {m['failed']:,} | {m['tokens']:,} | {m['full']} | {m['headers_only']} | "
              f"{m['kinds']} ({m['kinds_present']}) | {m['shapes']} | {m['functions']} | "
              f"{'yes' if m['summary'] else 'no'} | {m['seconds']:.2f} |")
        ok &= m["full"] >= min(3, m["failed"]) and m["tokens"] <= args.budget and m["kinds"] == m["kinds_present"]
    print(f"target: >= 3 full conversations of failed tasks covering every failure kind, within the budget: "
          f"{'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
