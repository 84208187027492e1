"""Reading results back from git: GitPython's persistent `git cat-file` against forgegit's earlier reads.

    python bench/git_reads.py [--quick]

One repository holds 3,000 commits with a note each (~20 KiB, like an evaluation's), 60 evaluations'
conversations of 25 tasks each under refs/forgegit/conversations, and functions/ at HEAD. Both
implementations read it in this same run, each in a fresh interpreter:

- today's forgegit (trees and single objects through `git.Objects`, i.e. GitPython; the notes in bulk
  through `git.read_blobs`);
- forgegit at BASELINE, the last revision that parsed `git cat-file --batch` / `ls-tree` output by hand,
  extracted from this repository's history with `git archive`.

Also timed, today only: every note's bytes through `git.read_blobs` (one `git cat-file --batch-check`,
then one `--batch`) and through GitPython one object per round trip, which is why `all_notes` reads in bulk.

Timed (median of 7 in the best of 3 interleaved rounds, each read cold: the notes' parse memo is cleared): `notes.all_notes` (every note),
`conversations.load` (one evaluation's 25 conversations), `conversations.prune(dry_run=True)` (sizes
of all 60 evaluations) and `git.read_functions`. Target: the same data, and no read slower than
BASELINE's by more than 1.5x or 5 ms (GitPython's process start costs a few ms; a read happens
once per command or epoch, next to model calls of seconds).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "f542cfc"  # reads by hand-parsed `git cat-file --batch` and `ls-tree` output
REPEATS = 7
Timing = dict[str, Any]  # {"s": median seconds, "value": a digest of what was read}
ROUNDS = 3  # fresh interpreters per implementation; the best round's median counts


def build(repo: Path, notes: int, evaluations: int, tasks: int) -> dict[str, str]:
    """The fixture repository; {evaluation key: conversations tree} of what was published."""
    sys.path.insert(0, str(ROOT))
    from forgegit import conversations

    def git(*args: str, data: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo, input=data, capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    git("config", "user.name", "bench")
    git("config", "user.email", "bench@example.com")
    (repo / "functions").mkdir()
    for i in range(12):
        (repo / "functions" / f"f{i}.py").write_text(f"def f{i}(x: int) -> int:\n    return x + {i}\n" * 20)
    git("add", "-A")
    git("commit", "-qm", "functions")
    # Notes through one fast-import stream: a commit per note, each annotated on refs/notes/forgegit.
    stream, pad = [], "x" * 20_000
    for i in range(notes):
        message = f"epoch {i}"
        stream += ["commit refs/heads/history", f"mark :{i + 1}", "committer b <b@e> 0 +0000",
                   f"data {len(message)}", message, ""]
    for i in range(notes):
        body = json.dumps({"evals": {}, "bench_padding": pad + str(i)})
        stream += ["commit refs/notes/forgegit", "committer b <b@e> 0 +0000", "data 4", "note",
                   f"N inline :{i + 1}", f"data {len(body)}", body, ""]
    git("fast-import", "--quiet", data="\n".join(stream) + "\n")
    trees = {}
    for e in range(evaluations):
        stage = repo / ".git" / "forgegit" / "trajectories" / f"{e:032x}"
        ids = [f"task-{t:03d}" for t in range(tasks)]
        for t in ids:
            conversations.stage(stage, {"task_id": t, "messages": [
                {"role": "user", "content": f"question {t} of evaluation {e}"},
                {"role": "assistant", "content": "answer " * 400}]})
        trees[f"{e:032x}"] = conversations.store(repo, stage, ids, 1 << 30)
    conversations.publish(repo, trees)
    return trees


def digest(value: object) -> str:
    """A short hash of what a read returned: "same data" compares contents, not counts."""
    if isinstance(value, dict) and all(isinstance(v, bytes) for v in value.values()):
        value = {k: hashlib.sha256(v).hexdigest() for k, v in value.items()}
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def measure(repo: Path, tree: str, referenced: dict[str, str]) -> dict[str, object]:
    """Time the reads with whichever forgegit is first on sys.path (run in a fresh interpreter)."""
    from forgegit import conversations, git, notes
    ids = [f"task-{t:03d}" for t in range(25)]
    reads: dict[str, Callable[[], object]] = {
        "all_notes": lambda: (notes._parsed.clear(), notes.all_notes(repo))[1],
        "conversations.load": lambda: conversations.load(repo, tree, ids),
        "conversations.prune (sizes)": lambda: conversations.prune(repo, referenced, dry_run=True).kept_bytes,
        "read_functions": lambda: {k: v.decode() for k, v in git.read_functions(repo, "HEAD").items()},
    }
    if hasattr(git, "Objects"):  # today only: why all_notes reads in bulk (git.read_blobs), not by GitPython
        listing = git.out(["notes", "--ref", notes.NOTES_REF, "list"], repo).split()[0::2]

        def one_by_one() -> dict[str, bytes]:
            with git.Objects(repo) as objects:
                return {blob: objects.blob(blob, notes.MAX_NOTE_BYTES) or b"" for blob in listing}
        reads["note bytes, git.read_blobs (2 processes)"] = lambda: git.read_blobs(repo, listing, notes.MAX_NOTE_BYTES)
        reads["note bytes, one GitPython read each"] = one_by_one
    out: dict[str, object] = {"module": str(Path(notes.__file__).parent)}
    for name, read in reads.items():
        times, value = [], None
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            value = read()
            times.append(time.perf_counter() - t0)
        out[name] = {"s": statistics.median(times), "value": digest(value)}  # digested untimed
    return out


def run_with(pythonpath: str, repo: Path, tree: str, referenced: dict[str, str]) -> dict[str, Timing]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    arg = json.dumps({"repo": str(repo), "tree": tree, "referenced": referenced})
    proc = subprocess.run([sys.executable, __file__, "--measure", arg], env=env, capture_output=True, text=True,
                          cwd=pythonpath)
    if proc.returncode != 0:
        raise SystemExit(f"measuring with {pythonpath} failed:\n{proc.stderr}")
    result: dict[str, Timing] = json.loads(proc.stdout)
    assert str(result["module"]).startswith(pythonpath), result["module"]  # the intended forgegit ran
    return result


def best(rounds: list[dict[str, Timing]]) -> dict[str, Timing]:
    """Per read, the round with the lowest median (the least disturbed by other load)."""
    return {name: min((r[name] for r in rounds), key=lambda m: m["s"]) for name in rounds[0] if name != "module"}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--measure"]:
        spec = json.loads(argv[1])
        print(json.dumps(measure(Path(spec["repo"]), spec["tree"], spec["referenced"])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="50 notes, 10 evaluations")
    quick = p.parse_args(argv).quick
    notes, evaluations = (50, 10) if quick else (3000, 60)
    if subprocess.run(["git", "cat-file", "-e", f"{BASELINE}^{{commit}}"], cwd=ROOT, capture_output=True).returncode:
        print(f"git_reads: skipped: {BASELINE} is not in this checkout's history (a shallow clone?): "
              f"fetch it (git fetch --unshallow) to compare against it")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        t0 = time.perf_counter()
        trees = build(repo, notes, evaluations, 25)
        print(f"fixture: {notes} notes, {evaluations} evaluations x 25 conversations ({time.perf_counter() - t0:.1f}s)")
        baseline = Path(tmp) / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "archive", BASELINE, "forgegit"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        referenced = {k: "2026-01-01T00:00:00+00:00" for k in trees}
        first = next(iter(trees.values()))
        runs: dict[str, list[dict[str, Timing]]] = {"old": [], "new": []}
        for _ in range(ROUNDS):  # interleaved, so a busy spell on the machine hits both
            runs["old"].append(run_with(str(baseline), repo, first, referenced))
            runs["new"].append(run_with(str(ROOT), repo, first, referenced))
        old, new = (best(runs[k]) for k in ("old", "new"))
    print(f"| read | {BASELINE} (by hand) ms | today (GitPython) ms | today / {BASELINE} | same data |")
    print("|---|---:|---:|---:|:---:|")
    worst, same, within = 0.0, True, True
    for name in [n for n in new if n in old]:
        a, b = old[name], new[name]
        ratio = b["s"] / a["s"]
        worst, same = max(worst, ratio), same and a["value"] == b["value"]
        within = within and (ratio <= 1.5 or b["s"] - a["s"] <= 0.005)
        print(f"| {name} | {a['s'] * 1000:.1f} | {b['s'] * 1000:.1f} | {ratio:.2f} | "
              f"{'yes' if a['value'] == b['value'] else 'NO'} |")
    bulk, each = (new[f"note bytes, {how}"] for how in ("git.read_blobs (2 processes)", "one GitPython read each"))
    same = same and bulk["value"] == each["value"]
    print(f"every note's bytes, today: git.read_blobs {bulk['s'] * 1000:.1f} ms, one GitPython read each "
          f"{each['s'] * 1000:.1f} ms ({each['s'] / bulk['s']:.1f}x, {'same' if bulk['value'] == each['value'] else 'DIFFERENT'} bytes)")
    print(f"target: same data, no read slower than {BASELINE}'s by more than 1.5x or 5 ms: "
          f"{'PASS' if within and same else 'MISS'} (worst ratio {worst:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
