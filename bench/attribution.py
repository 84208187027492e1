"""What attribution per action costs: model calls of one mixed epoch with `attribution` on vs off.

Scenario (scripted, in one process, real loopback server and real git): T tasks; the optimizer's one reply adds
A functions: one good (the odd tasks need it) and A-1 harmful ones (each breaks the even tasks), so the epoch
nets <= 0 and is not kept as a whole. Off: the epoch is reverted and the good edit is lost. On: each action is
judged alone on the same tasks (A more evaluations of T tasks, plus one when two or more pass), and the good
one is kept. Calls are counted on the server, by model; the agent makes one call per task.
Run: python bench/attribution.py [--quick]
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

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

from forgegit import demo, history  # noqa: E402
from forgegit.cli import cli  # noqa: E402
from forgegit.scripted import ScriptedServer, text, tool_calls, tool_names  # noqa: E402

HEADER = ["tasks", "actions", "attribution", "agent calls", "optimizer calls", "extra agent calls",
          "extra / epoch calls", "kept", "final score (train = val)"]


def scenario(root: Path, tasks: int, actions: int, attribution: bool) -> dict[str, Any]:
    """Train one epoch on the mixed reply; the server's call counts and what was kept."""
    repo = demo.make_repo(root / "repo")
    rows = [{"id": f"q{i:04d}", "question": f"Question {i}: what is {i} + {i}?", "answer": str(2 * i)}
            for i in range(tasks)]
    (repo / "tasks" / "train.jsonl").write_text("".join(json.dumps(t) + "\n" for t in rows))
    with (repo / "forgegit.toml").open("a") as f:
        f.write(f"attribution = {'true' if attribution else 'false'}\n")
    subprocess.run(["git", "commit", "-qam", "tasks"], cwd=repo, check=True)
    harmful = [f"harm_{j}" for j in range(actions - 1)]
    code = demo.WORD_COUNT
    reply = tool_calls(*(("add_function", {"name": n, "code": code.replace("def word_count", f"def {n}")})
                         for n in ["good", *harmful]), content="one good, the rest harmful")

    def script(request: dict[str, Any]) -> Any:
        if request["model"] == demo.OPTIMIZER_MODEL:
            return text("done") if any(m["role"] == "tool" for m in request["messages"]) else reply
        i = int(request["messages"][1]["content"].split()[1].rstrip(":"))
        tools = tool_names(request)
        ok = ("good" in tools) if i % 2 else not any(h in tools for h in harmful)
        return text(f"Final answer: {2 * i if ok else 2 * i + 1}")

    server = ScriptedServer(script).start()
    try:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            result = CliRunner().invoke(cli, ["train", "--run-id", "b", "--epochs", "1", "--max-actions", str(actions)], env=env)
        finally:
            os.chdir(cwd)
        if result.exit_code != 0:
            raise RuntimeError(f"{result.output}\n{result.exception!r}")
        by_model: dict[str, int] = {}
        for r in server.requests:
            by_model[r.get("model", "?")] = by_model.get(r.get("model", "?"), 0) + 1
    finally:
        server.stop()
    run = history.load_run(repo, "forgegit/train/b")
    epoch = run.epochs[0]
    kept, total = epoch.kept_actions
    return {"agent": by_model.get(demo.AGENT_MODEL, 0), "optimizer": by_model.get(demo.OPTIMIZER_MODEL, 0),
            "kept": f"{kept} of {total}", "score": run.final_gate.head_score if run.final_gate else 0.0}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller task sets")
    args = p.parse_args(argv)
    sizes = [12, 40] if args.quick else [12, 40, 200]
    print(f"# attribution per action: extra model calls of a mixed epoch ({machine()})\n")
    rows = []
    for tasks in sizes:
        for actions in (2, 3):
            off = on = None
            for attribution in (False, True):
                with tempfile.TemporaryDirectory(prefix="forgegit-bench-") as tmp:
                    got = scenario(Path(tmp), tasks, actions, attribution)
                if attribution:
                    on = got
                else:
                    off = got
            assert off and on
            epoch_calls = off["agent"]
            extra = on["agent"] - off["agent"]
            for label, got in (("off", off), ("on", on)):
                rows.append([tasks, actions, label, got["agent"], got["optimizer"],
                             extra if label == "on" else 0, f"{(extra / epoch_calls if label == 'on' else 0):.2f}x",
                             got["kept"], got["score"]])
    print(table(HEADER, rows))
    print("\nThe extra agent calls are the trial evaluations: one evaluation of the epoch's tasks per action (the "
          "before side is already known), plus one for the passing actions together when two or more pass; "
          "the optimizer is not asked again. 'epoch calls' is what the same epoch costs without attribution "
          "(baseline, the epoch, and the final gate on the training set).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
