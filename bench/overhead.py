"""forgegit's own overhead with a zero-latency model: git, sandbox, checks, notes, HTTP client.

Part A, one training epoch: `forgegit train --epochs 1` (in process, the CLI's code path) on a
fresh repository with T digit-sum tasks and F trivial valid function files (plus add.py), against a
scripted server (in its own process) with NO latency; the optimizer adds digit_sum in epoch 1 (kept). Reported:
    baseline  = the base revision's evaluation (1 model call a task: no digit_sum yet)
    epoch     = optimizer call + write/check/commit + evaluation of the new commit (2 calls a task)
                + gate + notes + branch update
    final     = the final gate (both sides already recorded in notes: no model call)
    ms/call   = whole run wall / model calls (everything forgegit and the HTTP stack add per call)
Part B, `forgegit eval REV` of a recorded result (no model call) with N notes in the repository:
    own note  = REV's own note holds the result;
    scan      = REV is a new commit with the same functions/ tree: every note is read to find it
                (and the hit is copied into REV's note).
Run: /work/venv/bin/python bench/overhead.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import RemoteServer, git, machine, make_repo, make_tasks, model_env, table, train_in_process

HEADER_A = ["tasks", "functions", "model calls", "run wall s", "baseline s", "epoch s", "final s", "ms/call",
            "epoch ms/task"]
HEADER_B = ["notes", "eval own note s", "eval scan s", "eval scan (subprocess) s"]


def epoch_run(tmp: Path, n_tasks: int, n_functions: int) -> list[Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    repo = make_repo(tmp / f"repo-{n_tasks}-{n_functions}", tasks=make_tasks(n_tasks), n_functions=n_functions,
                     extra_config="")
    marks: dict[str, float] = {}

    def echo(line: str) -> None:
        now = time.perf_counter()
        if line.startswith("baseline:"):
            marks["baseline"] = now
        elif line.startswith("epoch 1:") and ("kept" in line or "reverted" in line or "no valid" in line):
            marks["epoch"] = now

    with RemoteServer(0.0) as server, model_env(server):
        t0 = time.perf_counter()
        run = train_in_process(repo, "overhead", echo, epochs=1, concurrency=8)
        wall = time.perf_counter() - t0
        calls = server.calls
    assert run.epochs and run.epochs[0].kept, "epoch 1 should be kept"
    base = marks["baseline"] - t0
    epoch = marks["epoch"] - marks["baseline"]
    final = t0 + wall - marks["epoch"]
    return [n_tasks, n_functions + 1, calls, wall, base, epoch, final, 1000 * wall / calls, 1000 * epoch / n_tasks]


def _fast_import_notes(repo: Path, start: int, n: int, note_template: dict[str, Any]) -> None:
    """n filler commits, each with a note the size of a real one (other keys), in one git fast-import."""
    head = git(repo, "rev-parse", "HEAD")
    notes_tip = git(repo, "rev-parse", "refs/notes/forgegit")
    stream: list[bytes] = []

    def data(b: bytes) -> None:
        stream.append(b"data %d\n" % len(b) + b + b"\n")

    for i in range(n):
        stream.append(b"commit refs/heads/bench-filler-%d\nmark :%d\ncommitter B <b@x> 0 +0000\n" % (start, i + 1))
        data(b"filler %d" % (start + i))
        if i == 0:
            stream.append(b"from " + head.encode() + b"\n")
        stream.append(b"M 644 inline filler.txt\n")
        data(b"%d\n" % (start + i))
    stream.append(b"commit refs/notes/forgegit\ncommitter B <b@x> 0 +0000\n")
    data(b"bench: filler notes")
    stream.append(b"from " + notes_tip.encode() + b"\n")
    (key, value), = note_template["evals"].items()
    for i in range(n):
        note = dict(note_template)
        note["evals"] = {uuid.uuid4().hex: value}
        stream.append(b"N inline :%d\n" % (i + 1))
        data(json.dumps(note, sort_keys=True, indent=1).encode())
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(stream), check=True,
                   capture_output=True)


def _cli_eval(repo: Path, rev: str) -> float:
    from click.testing import CliRunner

    from forgegit.cli import cli
    old = os.getcwd()
    os.chdir(repo)
    try:
        t0 = time.perf_counter()
        result = CliRunner().invoke(cli, ["eval", rev], catch_exceptions=False)
        wall = time.perf_counter() - t0
    finally:
        os.chdir(old)
    assert result.exit_code == 0 and "reused from git notes" in result.output, result.output
    return wall


def notes_lookup(tmp: Path, counts: list[int], reps: int) -> list[list[Any]]:
    repo = make_repo(tmp / "repo-notes", digit_sum=True)
    rows = []
    with RemoteServer(0.0) as server, model_env(server):
        r = subprocess.run([sys.executable, "-m", "forgegit", "eval"], cwd=repo, capture_output=True, text=True,
                           env=dict(os.environ), check=True)
        assert server.calls > 0, r.stdout
        from forgegit import notes
        template = notes.read_note(repo, git(repo, "rev-parse", "HEAD"))
        have = 1
        for n in counts:
            _fast_import_notes(repo, have, n - have, template)
            have = n
            calls = server.calls
            own = statistics.median(_cli_eval(repo, "HEAD") for _ in range(reps))
            scans = []
            for i in range(reps):
                c = git(repo, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", f"same tree {n}-{i}")
                scans.append(_cli_eval(repo, c))
            c = git(repo, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", f"same tree {n} subprocess")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "forgegit", "eval", c], cwd=repo, capture_output=True,
                               text=True, env=dict(os.environ))
            sub = time.perf_counter() - t0
            assert r.returncode == 0 and "reused" in r.stdout, r.stdout + r.stderr
            assert server.calls == calls, "a recorded result must not call the model"
            count = len(git(repo, "notes", "--ref", "forgegit", "list").splitlines())
            rows.append([count, own, statistics.median(scans), sub])
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10/100 tasks, 10 functions, 10/100 notes (smoke test)")
    a = p.parse_args(argv)
    grid = [(10, 10), (100, 10)] if a.quick else [(10, 10), (100, 10), (1000, 10), (100, 100)]
    counts = [10, 100] if a.quick else [10, 100, 1000]
    print(f"# overhead: zero-latency scripted model; {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fg-bench-overhead-") as d:
        epoch_run(Path(d) / "warm-up", 10, 1)  # imports, first connections: not reported
        for n_tasks, n_functions in grid:
            rows.append(epoch_run(Path(d), n_tasks, n_functions))
            print(f"  {n_tasks} tasks, {n_functions + 1} functions: {rows[-1][3]:.2f}s", file=sys.stderr, flush=True)
        print("## A. one training epoch (train --epochs 1)")
        print(table(HEADER_A, rows))
        notes_rows = notes_lookup(Path(d), counts, 1 if a.quick else 3)
    print("## B. `forgegit eval` of a recorded result (notes lookup, no model call)")
    print(table(HEADER_B, notes_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
