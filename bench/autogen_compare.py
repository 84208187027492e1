"""forgegit vs AutoGen's AgentOptimizer (pyautogen==0.2.35), side by side on the same scripted model.

Same tasks (T digit-sum questions), same scripted proposals (epoch 1 add digit_sum: better;
epoch 2 revise it into a broken version: worse, rolled back; epoch 3 add a useless word_count),
same agent rule (call digit_sum when offered, else guess), same server and latency per call.
Calls and prompt tokens are counted on the server (estimate_tokens of messages + tools/functions,
the same accounting for both), tagged per epoch by markers each side sends at its boundaries.

    forgegit : `forgegit train --epochs 3` in process (the CLI's code path), fresh repository and
               cache; run three times: concurrency 1 (sequential, like AutoGen), concurrency 4 (the
               demo's setting), and concurrency 1 with cache = false (no notes reuse, no response
               cache: like AutoGen run with cache_seed=None, which is how the AutoGen side runs).
               Epoch 1 includes the baseline evaluation; "final" is the final gate.
    autogen  : bench/_autogen_side.py in the bench venv's interpreter: the notebook's loop
               (evaluate every task with the current functions, record, step()); "final" evaluates
               the last step's functions once, so both sides evaluate 4 function sets and ask the
               optimizer 3 times.
The AutoGen side needs its own venv:
    python3 -m venv .bench-venv && .bench-venv/bin/pip install "pyautogen==0.2.35" "numpy<2"
(or set FORGEGIT_AUTOGEN_PYTHON to an interpreter that has it); without it that side is skipped.
Run: python bench/autogen_compare.py [--quick] [--tasks N] [--latency S]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from _common import HERE, RemoteServer, machine, make_repo, make_tasks, model_env, table, train_in_process

INSTALL = ('python3 -m venv .bench-venv && .bench-venv/bin/pip install "pyautogen==0.2.35" "numpy<2" '
           "(or set FORGEGIT_AUTOGEN_PYTHON)")
HEADER = ["system", "epoch", "wall s", "model calls", "prompt tokens", "of which optimizer calls",
          "optimizer prompt tokens", "score evaluated", "functions after"]
EPOCH_DONE = re.compile(r"^epoch (\d+): (\S+ -> \S+ (kept|reverted)|no valid edit)")


def autogen_python() -> tuple[Optional[str], str]:
    """The bench venv's interpreter if it can import AgentOptimizer, else (None, why)."""
    py = os.environ.get("FORGEGIT_AUTOGEN_PYTHON") or str(Path(__file__).resolve().parent.parent / ".bench-venv" / "bin" / "python")
    if not Path(py).exists():
        return None, f"{py} not found"
    probe = subprocess.run([py, "-c", "import autogen.agentchat.contrib.agent_optimizer"], capture_output=True,
                           text=True, timeout=120)
    if probe.returncode != 0:
        return None, f"{py} cannot import autogen.agentchat.contrib.agent_optimizer: {probe.stderr.strip()[-300:]}"
    return py, ""


def _usage(server: RemoteServer, prefix: str) -> dict[str, tuple[int, int, int, int]]:
    """{tag: (calls, prompt tokens, optimizer calls, optimizer prompt tokens)}"""
    out: dict[str, tuple[int, int, int, int]] = {}
    for model, tag, calls, tokens in server.stats()["rows"]:
        if tag.startswith(prefix):
            c, t, oc, ot = out.get(tag, (0, 0, 0, 0))
            opt = "optimizer" in model
            out[tag] = (c + calls, t + tokens, oc + calls * opt, ot + tokens * opt)
    return out


def run_forgegit(tmp: Path, server: RemoteServer, tasks: list[dict[str, str]], epochs: int, concurrency: int,
                 label: str, cache: bool = True) -> list[list[Any]]:
    repo = make_repo(tmp / re.sub(r"\W+", "-", label), tasks=tasks, model="fg-agent", optimizer_model="fg-optimizer")
    prefix = f"{label}-"
    marks: list[tuple[str, float]] = []

    def mark(tag: str) -> None:
        server.mark(prefix + tag)
        marks.append((tag, time.perf_counter()))

    def echo(line: str) -> None:
        m = EPOCH_DONE.match(line)
        if m:
            k = int(m.group(1))
            mark(f"epoch-{k + 1}" if k < epochs else "final")

    with model_env(server):
        mark("epoch-1")
        run = train_in_process(repo, "compare", echo, epochs=epochs, patience=epochs, concurrency=concurrency,
                               cache=cache)
        end = time.perf_counter()
    server.mark("idle")
    usage = _usage(server, prefix)
    rows = []
    for i, (tag, t0) in enumerate(marks):
        t1 = marks[i + 1][1] if i + 1 < len(marks) else end
        calls, tokens, ocalls, otokens = usage.get(prefix + tag, (0, 0, 0, 0))
        if tag == "final":
            score = f"val {run.final_gate.head_score:.3f}" if run.final_gate else ""
            fns = ""
        else:
            e = run.epochs[int(tag.split("-")[1]) - 1]
            score = f"{e.score_after:.3f} ({'kept' if e.kept else 'rolled back'})" if e.score_after is not None else "-"
            fns = ""
        rows.append([label, tag.replace("epoch-", ""), t1 - t0, calls, tokens, ocalls, otokens, score, fns])
    from forgegit import git
    names = sorted(p[:-3] for p in git.read_functions(repo, run.branch))
    rows[-1][-1] = ",".join(names)
    return rows


def run_autogen(py: str, tmp: Path, server: RemoteServer, tasks: list[dict[str, str]], epochs: int,
                max_actions: int) -> tuple[list[list[Any]], dict[str, Any]]:
    tasks_file, out = tmp / "ag-tasks.jsonl", tmp / "ag-out.json"
    tasks_file.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    proc = subprocess.run([py, str(HERE / "_autogen_side.py"), server.base_url, str(tasks_file), str(out),
                           "--epochs", str(epochs), "--max-actions", str(max_actions)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"the AutoGen side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(out.read_text())
    usage = _usage(server, "ag-")
    rows = []
    for e in data["epochs"]:
        calls, tokens, ocalls, otokens = usage.get(f"ag-epoch-{e['epoch']}", (0, 0, 0, 0))
        rows.append(["autogen", e["epoch"], e["wall"], calls, tokens, ocalls, otokens, f"{e['passed'] / e['total']:.3f}",
                     ",".join(e["functions"])])
    calls, tokens, ocalls, otokens = usage.get("ag-final", (0, 0, 0, 0))
    f = data["final"]
    rows.append(["autogen", "final", f["wall"], calls, tokens, ocalls, otokens, f"{f['passed'] / f['total']:.3f}", ""])
    return rows, data


def _total(rows: list[list[Any]]) -> list[Any]:
    return [rows[0][0], "total"] + [sum(r[i] for r in rows) for i in range(2, 7)]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 tasks, 0.02 s latency (smoke test)")
    p.add_argument("--tasks", type=int, default=0)
    p.add_argument("--latency", type=float, default=-1.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-actions", type=int, default=3, help="forgegit max_actions = AutoGen max_actions_per_step")
    a = p.parse_args(argv)
    n = a.tasks or (12 if a.quick else 50)
    latency = a.latency if a.latency >= 0 else (0.02 if a.quick else 0.05)
    tasks = make_tasks(n, seed=1)
    py, why = autogen_python()
    print(f"# autogen_compare: {n} tasks, {a.epochs} epochs, latency {latency}s/call, max actions {a.max_actions}; "
          f"{machine()}")
    rows: list[list[Any]] = []
    totals: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fg-bench-ag-") as d, RemoteServer(latency) as server:
        run_forgegit(Path(d), server, tasks[:3], 1, 1, "warm-up")  # imports, first connections: not reported
        for conc, label, cache in ((1, "forgegit c=1", True), (4, "forgegit c=4", True),
                                   (1, "forgegit c=1 no-cache", False)):
            r = run_forgegit(Path(d), server, tasks, a.epochs, conc, label, cache)
            rows += r
            totals[label] = _total(r)
            print(f"  {label}: {totals[label][2]:.2f}s", file=sys.stderr, flush=True)
        ag_data: dict[str, Any] = {}
        if py:
            try:
                r, ag_data = run_autogen(py, Path(d), server, tasks, a.epochs, a.max_actions)
                rows += r
                totals["autogen"] = _total(r)
            except Exception as exc:  # report, do not fail: the forgegit side stands on its own
                why = f"the AutoGen side did not run: {exc}"
    print(table(HEADER, rows))
    print()
    print(table(HEADER[:7], list(totals.values())))
    if "autogen" not in totals:
        print(f"autogen: skipped: {why}; install with: {INSTALL}")
        return 0
    print(f"autogen {ag_data.get('autogen')} (import time {ag_data.get('import_s', 0):.2f}s, not counted)")
    ag = totals["autogen"]
    ratio_rows = []
    for label in ("forgegit c=1", "forgegit c=4", "forgegit c=1 no-cache"):
        fg = totals[label]
        ratio_rows.append([label, fg[2] / ag[2], fg[3] / ag[3], fg[4] / ag[4], fg[6] / ag[6]])
    print()
    print(table(["forgegit / autogen, totals (= per-epoch means)", "wall", "model calls", "prompt tokens",
                 "optimizer prompt tokens"], ratio_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
