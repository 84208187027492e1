"""A training repository for tests: N tasks whose scripted agent passes task i when `passes(i, tools)` says so,
and a scripted optimizer that gives `replies[epoch - 1]` (then no change); every optimizer request is kept."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from conftest import git

from forgegit import demo
from forgegit.scripted import Reply, text, tool_calls, tool_names


def helper_code(name: str) -> str:
    """A valid function file for `name` (what it does does not matter: the agent's rule decides)."""
    return demo.WORD_COUNT.replace("def word_count", f"def {name}")


def add(name: str) -> Any:
    return ("add_function", {"name": name, "code": helper_code(name)})


def adds(*names: str, content: str = "") -> Reply:
    return tool_calls(*(add(n) for n in names), content=content or None)


@dataclass
class Training:
    repo: Path
    optimizer_prompts: list[str] = field(default_factory=list)  # the user message of every optimizer request


def make(tmp: Path, passes: Callable[[int, list[str]], bool], replies: list[Any], *, n: int = 12,
         config: str = "") -> tuple[Training, Callable[[dict[str, Any]], Any]]:
    """The repository (committed on main) and the script to serve."""
    repo = demo.make_repo(tmp / "repo")
    tasks = [{"id": f"q{i:02d}", "question": f"Question {i}: what is {i} + {i}?", "answer": str(2 * i)}
             for i in range(n)]
    (repo / "tasks" / "train.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    if config:
        with (repo / "forgegit.toml").open("a") as f:
            f.write(config)
    git(repo, "commit", "-qam", "tasks")
    training = Training(repo)

    def script(request: dict[str, Any]) -> Any:
        if request["model"] == demo.OPTIMIZER_MODEL:
            if any(m["role"] == "tool" for m in request["messages"]):
                return text("done")
            training.optimizer_prompts.append(str(request["messages"][1]["content"]))
            k = demo.epoch_of(request)
            return replies[k - 1] if k <= len(replies) else text("No more changes.")
        question = request["messages"][1]["content"]
        i = int(question.split()[1].rstrip(":"))
        ok = passes(i, [t for t in tool_names(request) if t != "python"])
        return text(f"Final answer: {2 * i if ok else 2 * i + 1}")

    return training, script
