"""`forgegit demo`: a complete training, offline, against a SCRIPTED model served on loopback.

The scripted agent solves a digit-sum task only when a working `digit_sum` function exists;
the scripted optimizer adds one (kept), then breaks it (reverted), then proposes an unsafe
name (rejected) and a useless function (reverted): patience 2 stops the run early.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from . import git
from .scripted import HTTPError, Reply, Script, last_user_message, text, tool_calls, tool_names, tool_results

AGENT_MODEL = "scripted-agent"
OPTIMIZER_MODEL = "scripted-optimizer"

NUMBERS = [987654, 123456789, 5550123, 8080, 99999, 31415926, 2718281, 47, 1000001, 864209753, 777, 13579]

TASKS = [{"id": f"digits-{n}", "question": f"What is the sum of the digits of {n}?", "answer": str(sum(map(int, str(n))))}
         for n in NUMBERS]

BASE_FUNCTION = '''"""Arithmetic for the demo agent."""


def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b
'''

DIGIT_SUM = '''"""Digit sums."""


def digit_sum(n: int) -> int:
    """Return the sum of the decimal digits of an integer.

    Args:
        n: The integer whose digits are added (the sign is ignored).
    """
    return sum(int(d) for d in str(abs(n)))
'''

DIGIT_SUM_BROKEN = DIGIT_SUM.replace("return sum(int(d) for d in str(abs(n)))",
                                     "return sum(int(d) for d in str(abs(n))[1:])  # skip the leading digit")

WORD_COUNT = '''"""Word counting."""


def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count words in.
    """
    return len(text.split())
'''


def _action(name: str, code: str, description: str) -> dict[str, Any]:
    return {"name": name, "description": description, "arguments": {"type": "object"}, "packages": "", "code": code}


def agent_reply(request: dict[str, Any]) -> Reply:
    """The scripted agent: use digit_sum if it exists, else guess the digital root (usually wrong)."""
    question = last_user_message(request)
    match = re.search(r"digits of (\d+)", question)
    n = int(match.group(1)) if match else 0
    results = tool_results(request)
    if results:
        value = results[-1].strip()
        if value.startswith("Error"):
            return text("The tool failed, so I estimate.\nFinal answer: 0")
        return text(f"The digit_sum function says {value}.\nFinal answer: {value}")
    if "digit_sum" in tool_names(request):
        return tool_calls(("digit_sum", {"n": n}))
    guess = 1 + (n - 1) % 9 if n else 0
    return text(f"I will guess from the digital root.\nFinal answer: {guess}")


def epoch_of(request: dict[str, Any]) -> int:
    """Which epoch an optimizer request is for: one more than the epochs in its score history."""
    prompt = "\n".join(str(m.get("content") or "") for m in request["messages"] if m.get("role") == "user")
    return len(re.findall(r"^- epoch \d+:", prompt, re.M)) + 1


class OptimizerScript:
    """The scripted optimizer (stateless, so a resumed run sees the same answers)."""

    def __call__(self, request: dict[str, Any]) -> Reply:
        if any(m.get("role") == "tool" for m in request["messages"]):  # a repair round: give up politely
            return text("Understood; I withdraw the rejected edit.")
        self.epoch = epoch_of(request)
        if self.epoch == 1:
            return tool_calls(("add_function", _action("digit_sum", DIGIT_SUM, "Sum of decimal digits")),
                              content="Every failure is a digit-sum question answered by guessing: add a digit_sum function.")
        if self.epoch == 2:
            return tool_calls(("revise_function", _action("digit_sum", DIGIT_SUM_BROKEN, "Sum of decimal digits")),
                              content="Speed up digit_sum by skipping the leading digit (a bad idea, to show a revert).")
        if self.epoch == 3:
            return tool_calls(
                ("add_function", _action("../.github/workflows/pwn", "print('x')", "escape")),
                ("add_function", _action("word_count", WORD_COUNT, "Count words")),
                content="Add a workflow file and a word counter (the first is unsafe and must be rejected).")
        return text("I have no further changes to propose.")


def make_script() -> Script:
    optimizer = OptimizerScript()

    def script(request: dict[str, Any]) -> Reply | HTTPError:
        if request.get("model") == OPTIMIZER_MODEL:
            return optimizer(request)
        if request.get("model") == AGENT_MODEL:
            return agent_reply(request)
        return HTTPError(404, {"error": {"message": f"model {request.get('model')!r} not found", "type": "invalid_request_error"}})

    return script


DEMO_IDENTITY = ("forgegit demo", "demo@forgegit.invalid")


def demo_files(tasks: Sequence[Mapping[str, str]] = TASKS, functions: Optional[Mapping[str, str]] = None, *,
               model: str = AGENT_MODEL, optimizer_model: str = OPTIMIZER_MODEL, extra_config: str = "") -> dict[str, str]:
    """The demo repository's files: functions/NAME.py for each function (default: `add`), the tasks, a forgegit.toml."""
    files = {f"functions/{name}.py": code for name, code in (functions or {"add": BASE_FUNCTION}).items()}
    files["tasks/train.jsonl"] = "".join(json.dumps(t) + "\n" for t in tasks)
    files["forgegit.toml"] = (
        f'model = "{model}"\noptimizer_model = "{optimizer_model}"\ntasks = "tasks/train.jsonl"\n'
        'checker = "numeric"\nepochs = 5\npatience = 2\nmax_actions = 3\ngate = "mcnemar"\nalpha = 0.1\n'
        'python_tool = false\nconcurrency = 4\n' + extra_config)
    return files


def make_repo(path: Path, files: Optional[Mapping[str, str]] = None, message: str = "demo: an agent with one function",
              *, identity: Optional[tuple[str, str]] = DEMO_IDENTITY) -> Path:
    """A git repository on branch main with files (default: the demo's) in one commit (none if empty), by identity if set."""
    path.mkdir(parents=True, exist_ok=True)

    def run(*a: str) -> None:
        subprocess.run(git.command(a), cwd=path, check=True, capture_output=True)

    run("init", "-q", "-b", "main")
    if identity is not None:
        run("config", "user.name", identity[0])
        run("config", "user.email", identity[1])
    files = demo_files() if files is None else files
    for name, content in files.items():
        p = path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    if files:
        run("add", "-A")
        run("commit", "-q", "-m", message)
    return path


def demo_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="forgegit-demo-"))
