"""Shared pieces of the benchmarks: generated repositories and tasks, a counting scripted model,
in-process training, tables.

Every benchmark talks to a real loopback server (forgegit.scripted.ScriptedServer, or the tests' richer
one, tests/scripted_server.py, for latency, concurrency counts and a prompt cache); counts of model calls
and prompt tokens are taken on the SERVER side, tagged by model name. Importing this module puts tests/
on sys.path, so that benches import the tests' helpers by the names the tests use (one module object
each, whether a bench runs as a script or a test imports it).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from forgegit import demo
from forgegit.records import RunRecord
from forgegit.scripted import ScriptedServer, estimate_tokens, text, tool_calls

HERE = Path(__file__).resolve().parent
if str(HERE.parent / "tests") not in sys.path:
    sys.path.append(str(HERE.parent / "tests"))

BENCH_IDENTITY = ("forgegit bench", "bench@forgegit.invalid")
GIT_ID = ("-c", f"user.name={BENCH_IDENTITY[0]}", "-c", f"user.email={BENCH_IDENTITY[1]}")


def machine(server: bool = True) -> str:
    """When and where a bench ran (and, for those that use one, the scripted server's settings)."""
    line = (f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")
    return line + ", scripted server with TCP_NODELAY, backlog 256" if server else line


# ------------------------------------------------------------------ tasks and repositories


def make_tasks(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n digit-sum tasks like forgegit.demo.TASKS (distinct numbers, deterministic)."""
    rng = random.Random(seed)
    seen: set[int] = set()
    out = []
    while len(out) < n:
        x = rng.randrange(10, 10 ** rng.randint(3, 12))
        if x in seen:
            continue
        seen.add(x)
        out.append({"id": f"digits-{len(out):05d}-{x}", "question": f"What is the sum of the digits of {x}?",
                    "answer": str(sum(map(int, str(x))))})
    return out


def trivial_function(i: int) -> str:
    name = f"f_{i:04d}"
    return (f'"""Trivial function number {i}."""\n\n\ndef {name}(x: int) -> int:\n'
            f'    """Return x plus {i}.\n\n    Args:\n        x: The number.\n    """\n    return x + {i}\n')


def git(repo: Path, *args: str, input: Optional[str] = None) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True, text=True,
                          input=input).stdout.strip()


def make_repo(path: Path, *, tasks: Optional[list[dict[str, str]]] = None, digit_sum: bool = False,
              n_functions: int = 0, model: str = demo.AGENT_MODEL, optimizer_model: str = demo.OPTIMIZER_MODEL,
              extra_config: str = "") -> Path:
    """forgegit.demo.make_repo with: the given tasks, digit_sum, N trivial functions, model names, config lines."""
    functions = {"add": demo.BASE_FUNCTION, **({"digit_sum": demo.DIGIT_SUM} if digit_sum else {}),
                 **{f"f_{i:04d}": trivial_function(i) for i in range(n_functions)}}
    files = demo.demo_files(demo.TASKS if tasks is None else tasks, functions, model=model,
                            optimizer_model=optimizer_model, extra_config=extra_config)
    return demo.make_repo(path, files, "bench: set-up", identity=BENCH_IDENTITY)


# ------------------------------------------------------------------ the scripted model


def _action(name: str, code: str, description: str) -> dict[str, Any]:
    return {"name": name, "description": description, "arguments": {"type": "object"}, "packages": "", "code": code}


def forgegit_optimizer(request: dict[str, Any]) -> Any:
    """The benchmark's optimizer for forgegit: epoch 1 add digit_sum (improves), epoch 2 revise it into a
    broken version (worse: rolled back), epoch 3 add a useless word_count (no gain: rolled back), then nothing."""
    if any(m.get("role") == "tool" for m in request["messages"]):  # a repair round (none expected)
        return text("Understood; I withdraw the rejected edit.")
    epoch = demo.epoch_of(request)
    if epoch == 1:
        return tool_calls(("add_function", _action("digit_sum", demo.DIGIT_SUM, "Sum of decimal digits")),
                          content="Every failure is a digit-sum question answered by guessing: add digit_sum.")
    if epoch == 2:
        return tool_calls(("revise_function", _action("digit_sum", demo.DIGIT_SUM_BROKEN, "Sum of decimal digits")),
                          content="Speed up digit_sum by skipping the leading digit.")
    if epoch == 3:
        return tool_calls(("add_function", _action("word_count", demo.WORD_COUNT, "Count words")),
                          content="Add a word counter.")
    return text("I have no further changes to propose.")


# ------------------------------------------------------------------ AutoGen's side of the same script

_AG_ARGS = json.dumps({"n": {"type": "integer", "description": "The integer whose digits are added."}})
_AG_WC_ARGS = json.dumps({"text": {"type": "string", "description": "The text to count words in."}})


def _ag_action(tool: str, name: str, code: str, description: str, arguments: str) -> tuple[str, dict[str, Any]]:
    return tool, {"name": name, "description": description, "arguments": arguments, "packages": "", "code": code}


def autogen_optimizer(request: dict[str, Any]) -> Any:
    """AgentOptimizer.step() asks for ONE action per request (max_actions_per_step requests a step). The same
    proposals as forgegit_optimizer: epoch 1 add digit_sum, epoch 2 revise it into the broken version,
    epoch 3 (after the roll-back, when the prompt lists the failed function set) add word_count."""
    prompt = "\n".join(str(m.get("content") or "") for m in request["messages"])
    done = re.search(r"after taking (\d+) actions", prompt)
    if done and int(done.group(1)) > 0:
        return text("TERMINATE")
    if "List A: []." in prompt:
        return tool_calls(_ag_action("add_function", "digit_sum", demo.DIGIT_SUM, "Sum of decimal digits", _AG_ARGS),
                          content="Every failure is a digit-sum question answered by guessing: add digit_sum.")
    if "We also provide more examples for different functions" in prompt:
        return tool_calls(_ag_action("add_function", "word_count", demo.WORD_COUNT, "Count words", _AG_WC_ARGS),
                          content="Add a word counter.")
    return tool_calls(_ag_action("revise_function", "digit_sum", demo.DIGIT_SUM_BROKEN, "Sum of decimal digits", _AG_ARGS),
                      content="Speed up digit_sum by skipping the leading digit.")


def autogen_agent(request: dict[str, Any]) -> Any:
    """forgegit.demo.agent_reply's rule for AutoGen's AssistantAgent (legacy `functions` / function_call):
    use digit_sum if offered, else guess the digital root."""
    messages = request["messages"]
    question = next((str(m["content"]) for m in messages if m.get("role") == "user"), "")
    match = re.search(r"digits of (\d+)", question)
    n = int(match.group(1)) if match else 0
    results = [str(m.get("content")) for m in messages if m.get("role") in ("function", "tool")]
    if results:
        lines = [x for x in results[-1].strip().splitlines() if x.strip()]
        value = lines[-1].strip() if lines else ""
        if not re.fullmatch(r"-?\d+", value):
            return text("The tool failed, so I estimate.\nFinal answer: 0")
        return text(f"The digit_sum function says {value}.\nFinal answer: {value}")
    offered = [f.get("name") for f in request.get("functions") or []] + [
        t["function"]["name"] for t in request.get("tools") or []]
    if "digit_sum" in offered:
        message = {"role": "assistant", "content": None,
                   "function_call": {"name": "digit_sum", "arguments": json.dumps({"n": n})}}
        return {"id": "chatcmpl-ag", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "function_call", "logprobs": None}],
                "usage": {"prompt_tokens": estimate_tokens([messages, request.get("functions")]),
                          "completion_tokens": estimate_tokens(message), "total_tokens": 0}}
    guess = 1 + (n - 1) % 9 if n else 0
    return text(f"I will guess from the digital root.\nFinal answer: {guess}")


class Counter:
    """Server-side counts by (model, epoch tag): calls and prompt tokens (estimate_tokens of messages+tools/functions)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tag = ""
        self.calls: dict[tuple[str, str], int] = {}
        self.tokens: dict[tuple[str, str], int] = {}

    def count(self, request: dict[str, Any]) -> None:
        model = str(request.get("model"))
        tokens = estimate_tokens([request.get("messages"), request.get("tools") or request.get("functions")])
        with self.lock:
            k = (model, self.tag)
            self.calls[k] = self.calls.get(k, 0) + 1
            self.tokens[k] = self.tokens.get(k, 0) + tokens

    def total(self, prefix: str = "", tag: Optional[str] = None) -> tuple[int, int]:
        with self.lock:
            keys = [k for k in self.calls if k[0].startswith(prefix) and (tag is None or k[1] == tag)]
            return sum(self.calls[k] for k in keys), sum(self.tokens[k] for k in keys)


def make_script(counter: Optional[Counter] = None, extra: Optional[dict[str, Callable[[dict[str, Any]], Any]]] = None
                ) -> Callable[[dict[str, Any]], Any]:
    """Agents (any model ending in 'agent' except ag-agent) answer like forgegit.demo's agent; optimizers by name."""
    routes: dict[str, Callable[[dict[str, Any]], Any]] = {
        demo.OPTIMIZER_MODEL: forgegit_optimizer, "fg-optimizer": forgegit_optimizer,
        "ag-optimizer": autogen_optimizer, "ag-agent": autogen_agent,
    }
    routes.update(extra or {})

    def script(request: dict[str, Any]) -> Any:
        model = str(request.get("model"))
        if model == "bench-marker":  # a synchronous epoch marker from a subprocess: not a model call
            if counter is not None:
                counter.tag = str(request["messages"][-1]["content"])
            return text("ok")
        if counter is not None:
            counter.count(request)
        if model in routes:
            return routes[model](request)
        return demo.agent_reply(request)

    return script


class RemoteServer:
    """bench/_server.py in a subprocess: the scripted model without sharing this process's CPU/GIL."""

    def __init__(self, latency: float = 0.0) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), str(latency)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.close()
            raise RuntimeError("bench/_server.py did not start")

    def stats(self, reset: bool = False) -> dict[str, int]:
        import urllib.request
        body = json.dumps({"model": "bench-stats", "messages": [{"role": "user", "content": "reset" if reset else "-"}]})
        req = urllib.request.Request(self.base_url + "/chat/completions", body.encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data: dict[str, int] = json.loads(json.loads(r.read())["choices"][0]["message"]["content"])
        return data

    @property
    def calls(self) -> int:
        return self.stats()["calls"]

    def mark(self, tag: str) -> None:
        """Tag the model calls that follow (an epoch boundary)."""
        import urllib.request
        body = json.dumps({"model": "bench-marker", "messages": [{"role": "user", "content": tag}]})
        req = urllib.request.Request(self.base_url + "/chat/completions", body.encode(),
                                     {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "RemoteServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def model_env(server: Any) -> Any:
    """Point the OpenAI SDK variables (read by forgegit.workspace.Workspace.llm) at server."""
    from forgegit.scripted import openai_env
    return openai_env(server.base_url, "sk-bench")


def train_in_process(repo: Path, run_id: str, echo: Callable[[str], None] = lambda s: None, **overrides: Any
                     ) -> RunRecord:
    """`forgegit train --run-id RUN_ID` in this process (the code path of the CLI); returns the RunRecord."""
    from forgegit.commands import train as train_cmd
    from forgegit.workspace import Workspace

    ws = Workspace.open(repo, **overrides)
    tasks = ws.task_set(ws.settings.tasks)
    import click
    old_echo = click.echo
    click.echo = lambda message=None, *a, **k: echo(str(message))  # type: ignore[assignment]
    try:
        run, _merged = asyncio.run(train_cmd._train(ws, tasks, tasks, None, None, run_id, None, merge=False))
        return run
    finally:
        click.echo = old_echo  # type: ignore[assignment]


def forgegit_cli(repo: Path, server: ScriptedServer, *args: str, crash_at: str = "", timeout: float = 600
                 ) -> subprocess.CompletedProcess[str]:
    """`python -m forgegit ARGS` as a subprocess (what a user runs), pointed at server."""
    env = dict(os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
    env.pop("FORGEGIT_TEST_CRASH_AT", None)
    if crash_at:
        env["FORGEGIT_TEST_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "forgegit", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------ output


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.3f}" if abs(c) < 100 else f"{c:.1f}"
    return str(c)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
