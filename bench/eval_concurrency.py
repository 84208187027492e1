"""Evaluation wall time vs concurrency, against the critical path of the model's latency.

200 digit-sum tasks, functions add + digit_sum (the scripted agent makes 2 model calls a task:
call digit_sum, then answer), a scripted server sleeping LATENCY s in every call, no caches
(settings.cache = False: every evaluation really calls the model). The server runs in its own
process (bench/_server.py) so it does not compete for this process's GIL. For each concurrency c:

    critical path = calls per task x latency x ceil(tasks / c)
    ratio         = wall / critical path            (1.0 = no overhead beyond the model's latency)
    forgegit CPU  = CPU time of the forgegit process during the evaluation (not the sandbox workers'):
                    near the wall time means the evaluation is CPU-bound on this machine
    raw SDK       = the same calls (2 per task, same concurrency) made straight with the openai SDK:
                    the floor set by the HTTP stack and the scripted server on this machine

Target: ratio <= 1.2 at c = 16 (reported as PASS/MISS; never fails).
Run: python bench/eval_concurrency.py [--quick] [--tasks N] [--latency S]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

from _common import RemoteServer, machine, make_repo, make_tasks, model_env, table

from forgegit.evaluation import Evaluator
from forgegit.workspace import Workspace

TARGET_AT, TARGET_RATIO = 16, 1.2
HEADER = ["concurrency", "tasks", "calls", "wall s", "critical path s", "ratio", "raw SDK s", "wall / raw", "max in flight",
          "forgegit CPU s", "CPU ms/call"]


async def _raw(base_url: str, n_tasks: int, concurrency: int) -> float:
    """The floor: the same 2 sequential calls per task straight through the openai SDK (no forgegit)."""
    import openai
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    q = "What is the sum of the digits of 123?"

    async def task() -> None:
        async with sem:
            msgs: list = [{"role": "user", "content": q}]
            r = await client.chat.completions.create(model="scripted-agent", messages=msgs, tools=TOOLS)
            msgs += [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": r.choices[0].message.tool_calls[0].id, "content": "6"}]
            await client.chat.completions.create(model="scripted-agent", messages=msgs, tools=TOOLS)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(n_tasks)))
        return time.perf_counter() - t0
    finally:
        await client.close()


TOOLS = [{"type": "function", "function": {"name": "digit_sum", "description": "Sum of digits.", "parameters": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}]


async def _eval(repo: Path, concurrency: int) -> tuple[float, float, int]:
    ws = Workspace.open(repo, cache=False, concurrency=concurrency)
    tasks = ws.task_set(ws.settings.tasks)
    llm = ws.llm()
    try:
        ev = Evaluator(ws.root, ws.settings, llm)
        t0, c0 = time.perf_counter(), time.process_time()
        result = await ev.evaluate("HEAD", tasks, record=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await llm.aclose()
    assert result.passed == result.total, f"{result.passed}/{result.total} passed: the scripted agent should solve all"
    return wall, cpu, len(tasks)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="40 tasks, concurrency 1, 4, 16 (smoke test)")
    p.add_argument("--tasks", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.05)
    a = p.parse_args(argv)
    n_tasks = a.tasks or (40 if a.quick else 200)
    levels = [1, 4, 16] if a.quick else [1, 4, 16, 64]
    calls_per_task = 2
    print(f"# eval_concurrency: {n_tasks} tasks, {calls_per_task} calls/task, latency {a.latency}s/call, no cache; {machine()}")
    rows = []
    verdict = ""
    with tempfile.TemporaryDirectory(prefix="fg-bench-conc-") as d:
        repo = make_repo(Path(d) / "repo", tasks=make_tasks(n_tasks), digit_sum=True)
        with RemoteServer(a.latency) as server, model_env(server):
            for c in levels:
                before = server.stats(reset=True)["calls"]
                wall, cpu, n = asyncio.run(_eval(repo, c))
                after = server.stats(reset=True)
                calls, in_flight = after["calls"] - before, after["max_in_flight"]
                print(f"  concurrency {c}: forgegit {wall:.2f}s", file=sys.stderr, flush=True)
                raw = asyncio.run(_raw(server.base_url, n, c))
                critical = calls_per_task * a.latency * math.ceil(n / c)
                ratio = wall / critical
                rows.append([c, n, calls, wall, critical, ratio, raw, wall / raw, in_flight, cpu, 1000 * cpu / calls])
                if c == TARGET_AT:
                    verdict = f"target ratio <= {TARGET_RATIO} at concurrency {TARGET_AT}: " + (
                        "PASS" if ratio <= TARGET_RATIO else "MISS") + f" ({ratio:.2f})"
    print(table(HEADER, rows))
    if verdict:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
