"""How much of forgegit's prompts a provider's prefix cache serves (issue 14, item 5).

A training run (`python -m forgegit train`, a subprocess, as users run it) against the scripted
server with `PromptCache()`: OpenAI's documented rule (a prompt's prefix shared with an earlier
request is cached once 1024 tokens match, in blocks of 128; tools are rendered first, then the
messages), reported as `usage.prompt_tokens_details.cached_tokens`, which forgegit counts and prices.

The agent has N functions with real-size docstrings (a tool list of a few thousand tokens), so the
stable part of each request is large, as in real use. Figures:
  - the cached share of prompt tokens as forgegit sends its requests (the server's own count, and
    forgegit's run record, which must agree);
  - the same requests replayed into a fresh cache with the task moved before the system prompt, and
    with a per-request line (a time stamp) at the start of the system prompt (what requests that put
    a variable part early would get);
  - the cost of the run's prompt tokens at gpt-4o-mini prices, with and without the cached rate.
Run: python bench/prompt_cache.py [--quick] [--tasks N] [--functions N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import machine, make_repo, make_script, make_tasks, table
from scripted_server import PromptCache, ScriptedServer  # tests/, which _common puts on sys.path

from forgegit.cost import PRICES
from forgegit.scripted import estimate_tokens


def documented_function(i: int) -> str:
    """A function with a docstring of the length real tools have (a paragraph and every argument)."""
    name = f"convert_{i:03d}"
    return (f'"""Unit conversion number {i}."""\n\n\n'
            f'def {name}(value: float, precision: int = 2, strict: bool = False) -> str:\n'
            f'    """Convert a quantity with conversion table {i} and return it as text with its unit.\n\n'
            f'    Use it whenever a task gives a quantity in the source unit of table {i} and asks for the\n'
            f'    target unit; it rounds to the precision asked and explains invalid input in its result.\n\n'
            f'    Args:\n'
            f'        value: The quantity to convert, in the source unit of table {i}.\n'
            f'        precision: How many decimal places the result keeps (0 to 10).\n'
            f'        strict: Refuse values outside the table\'s valid range instead of clamping them.\n'
            f'    """\n'
            f'    return f"{{round(value * {i + 1}.5, precision)}} units"\n')


def replay(requests: list[dict[str, Any]], task_first: bool, stamped: bool = False) -> tuple[int, int]:
    """(prompt tokens, cached tokens) of requests sent in this order to a fresh OpenAI-rule cache;
    task_first moves the task before the system prompt, stamped starts each system prompt with a
    per-request line (a time stamp, a request id), as some agents do."""
    cache = PromptCache()
    prompt = cached = 0
    for k, r in enumerate(requests):
        if stamped:
            msgs = [dict(m) for m in r.get("messages") or []]
            if msgs and msgs[0].get("role") == "system":
                msgs[0]["content"] = f"Request {k} at 2026-01-01T00:00:{k % 60:02d}Z.\n{msgs[0].get('content')}"
            r = {**r, "messages": msgs}
        if task_first:
            msgs = list(r.get("messages") or [])
            users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
            if users and msgs and msgs[0].get("role") == "system":
                first = users[0]
                msgs = [msgs[first]] + [m for i, m in enumerate(msgs) if i != first]
            r = {**r, "messages": msgs}
        n = estimate_tokens([r.get("messages"), r.get("tools")])
        prompt += n
        cached += cache.cached_tokens(r, n)
    return prompt, cached


def share(cached: int, prompt: int) -> str:
    return f"{cached / prompt:.1%}" if prompt else "-"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 tasks, 8 functions (smoke test)")
    p.add_argument("--tasks", type=int, default=0)
    p.add_argument("--functions", type=int, default=0)
    a = p.parse_args(argv)
    n_tasks = a.tasks or (12 if a.quick else 50)
    n_functions = a.functions or (8 if a.quick else 30)
    print(f"# prompt_cache: {n_tasks} tasks, {n_functions} documented functions, a 3-epoch run; {machine()}")
    cache = PromptCache()
    with tempfile.TemporaryDirectory(prefix="fg-bench-pcache-") as d, \
            ScriptedServer(make_script(), prompt_cache=cache) as server:
        repo = make_repo(Path(d) / "repo", tasks=make_tasks(n_tasks))
        for i in range(n_functions):
            (repo / "functions" / f"convert_{i:03d}.py").write_text(documented_function(i))
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "functions"], cwd=repo,
                       check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FORGEGIT_TEST_"))}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
        proc = subprocess.run([sys.executable, "-m", "forgegit", "train", "--run-id", "pc", "--epochs", "3"],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            return 1
        log = subprocess.run([sys.executable, "-m", "forgegit", "log", "pc", "--json"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=120)
        recorded = json.loads(log.stdout)["usage"]
        requests = [{k: v for k, v in r.items() if k != "_headers"} for r in server.requests]
    rows = []
    roles = {"agent": [r for r in requests if "agent" in str(r.get("model"))],
             "optimizer": [r for r in requests if "optimizer" in str(r.get("model"))]}
    totals = {"sent": [0, 0], "task first": [0, 0], "stamped": [0, 0]}
    for role, reqs in roles.items():
        sent = replay(reqs, task_first=False)
        first = replay(reqs, task_first=True)
        stamped = replay(reqs, task_first=False, stamped=True)
        for name, (pt, ct) in (("sent", sent), ("task first", first), ("stamped", stamped)):
            totals[name][0] += pt
            totals[name][1] += ct
        rows.append([role, len(reqs), f"{sent[0]:,}", f"{sent[1]:,}", share(sent[1], sent[0]),
                     f"{first[1]:,}", share(first[1], first[0]), share(stamped[1], stamped[0])])
    rows.append(["all", len(requests), f"{totals['sent'][0]:,}", f"{totals['sent'][1]:,}",
                 share(totals["sent"][1], totals["sent"][0]), f"{totals['task first'][1]:,}",
                 share(totals["task first"][1], totals["task first"][0]),
                 share(totals["stamped"][1], totals["stamped"][0])])
    print(table(["requests", "n", "prompt tokens", "cached (as sent)", "share", "cached (task first)", "share",
                 "share (stamped system prompt)"], rows))
    live_share = share(recorded["cached_tokens"], recorded["prompt_tokens"])
    print(f"\nforgegit's run record (the server's live reports, counted by forgegit): {recorded['cached_tokens']:,} of "
          f"{recorded['prompt_tokens']:,} prompt tokens cached ({live_share}); server cache hits: {cache.hits}")
    full, _, rate = PRICES["gpt-4o-mini"]
    pt, ct = totals["sent"]
    uncached_cost, cached_cost = pt * full / 1e6, ((pt - ct) * full + ct * rate) / 1e6
    ratio = cached_cost / uncached_cost if uncached_cost else 1.0
    print(f"prompt cost at gpt-4o-mini prices: ${uncached_cost:.4f} without the cache, ${cached_cost:.4f} with it "
          f"(ratio {ratio:.2f})")
    first_share = totals["task first"][1] / totals["task first"][0] if totals["task first"][0] else 0.0
    sent_share = ct / pt if pt else 0.0
    print(f"stable part first: cached share {sent_share:.1%} vs {first_share:.1%} with the task first "
          f"(x{sent_share / first_share:.2f})" if first_share else f"stable part first: cached share {sent_share:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
