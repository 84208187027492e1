"""The optimizer: its prompt, parsing and validating its actions, and writing them to functions/ only."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from forgegit.errors import ForgegitError
from forgegit.commits import commit_message
from forgegit.function_files import Action, apply_actions, write_actions
from forgegit.prompt import ACTION_TOOLS, build_prompt
from forgegit.proposal import parse_actions, propose, validate_action
from forgegit.records import EvalResult, TaskResult, Usage
from forgegit.scripted import ScriptedServer, tool_calls
from forgegit.tokens import count_message_tokens

HAS_SANDBOX = importlib.util.find_spec("forgegit.sandbox") is not None

CALCULATE = '''"""Arithmetic for the agent."""
import ast
import operator

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - *.

    Args:
        expression: The expression, e.g. "2 + 3 * 4".
    """
    return str(_eval(ast.parse(expression, mode="eval").body))


def _eval(node: ast.AST) -> int:
    if isinstance(node, ast.Constant):
        return int(node.value)
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    raise ValueError("unsupported expression")
'''

DIGIT_SUM = '''def digit_sum(n: int) -> int:
    """Sum of the decimal digits of an integer.

    Args:
        n: The integer.
    """
    return sum(int(d) for d in str(abs(n)))
'''

FILES = {"calculate.py": CALCULATE.encode()}


def source(name: str, body: str = "return str(x)", extra: str = "") -> str:
    """A well-formed function file named name."""
    return f'''{extra}def {name}(x: str) -> str:
    """Do something with x.

    Args:
        x: The input.
    """
    {body}
'''


def result(tid: str, passed: bool, feedback: str = "", answer: str = "", expected: str = "") -> TaskResult:
    return TaskResult(tid, passed, answer, expected, feedback, None if passed else "wrong_answer")


def make_eval(results: list[TaskResult]) -> EvalResult:
    return EvalResult("k", "rev", "tree", "tasks.jsonl", "h", "m", sum(r.passed for r in results), len(results),
                      Usage(), results)


def trajectory(question: str, tool_output: str, answer: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are the agent."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "calculate", "arguments": '{"expression": "2+2"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": tool_output},
        {"role": "assistant", "content": answer},
    ]


def call(name: str, args: Any, cid: str = "c") -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def add_args(name: str = "digit_sum", code: str = DIGIT_SUM, **kw: Any) -> dict[str, Any]:
    d = {"name": name, "description": "Sum of digits.", "arguments": {"type": "object", "properties": {"n": {"type": "integer"}}},
         "packages": "", "code": code}
    d.update(kw)
    return d


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------------------------------ prompt


def _prompt(**kw: Any) -> str:
    results = [result("t-pass", True, answer="4"), result("t-fail", False, "expected 42 but got 41: off by one", "41", "42")]
    trajs = {"t-pass": trajectory("What is 2+2?", "4", "4"), "t-fail": trajectory("Sum 1..8 plus 6?", "41", "41")}
    history = [{"epoch": 0, "score": 0.5, "kept": None, "actions": []},
               {"epoch": 1, "score": 0.25, "kept": False, "actions": [{"kind": "add", "name": "broken_tool", "accepted": True}]}]
    msgs = build_prompt(FILES, make_eval(results), trajs, history, max_actions=2, context_tokens=kw.pop("context_tokens", 8000), **kw)
    assert [m["role"] for m in msgs] == ["system", "user"]
    return msgs[0]["content"] + "\n" + msgs[1]["content"]


def test_prompt_shows_functions_with_schema_history_and_rules() -> None:
    """The optimizer sees the current source, the schema the agent sees, past epochs and the file rules."""
    p = _prompt()
    assert "### functions/calculate.py" in p and "_OPS = {ast.Add" in p
    assert '"name": "calculate"' in p  # the tool schema derived from the type hints
    assert "epoch 1: score 0.250, reverted; actions: add:broken_tool" in p
    assert "epoch 0: score 0.500, baseline" in p
    assert "Exactly one public function" in p and "at most 2 actions" in p
    assert "1/2 tasks passed" in p


def test_prompt_puts_failures_first_with_checker_feedback() -> None:
    p = _prompt()
    assert p.index("Task t-fail: FAILED") < p.index("Task t-pass: PASSED")
    assert "checker feedback: expected 42 but got 41: off by one" in p
    assert "[calculate returned] 41" in p  # the tool output of the trajectory
    assert "You are the agent." not in p  # the agent's system prompt is noise


def test_prompt_shows_problems_of_a_broken_current_file() -> None:
    msgs = build_prompt({"bad.py": b"def bad(x):\n    return x\n"}, make_eval([]), {}, [], max_actions=1, context_tokens=4000)
    assert "Problems (the agent cannot use this file" in msgs[1]["content"]


def test_sealed_test_task_never_reaches_the_optimizer() -> None:
    """A sealed test split must never leak into the optimizer's prompt: not its id, question, answer or feedback."""
    results = [result("train-1", False, "wrong", "1", "2"),
               result("SEALED-TEST-7", False, "SEALED-FEEDBACK", "SEALED-ANSWER", "SEALED-EXPECTED")]
    trajs = {"train-1": trajectory("train question", "1", "1"),
             "SEALED-TEST-7": trajectory("SEALED-QUESTION", "SEALED-TOOL-OUTPUT", "SEALED-ANSWER")}
    for budget in (500, 3000, 50000):
        msgs = build_prompt(FILES, make_eval(results), trajs, [], max_actions=1, context_tokens=budget,
                            forbidden_task_ids={"SEALED-TEST-7"})
        dump = json.dumps(msgs)
        assert "SEALED" not in dump
    assert "train question" in dump and "0/1 tasks passed" in dump


def test_trimming_respects_the_token_budget_and_keeps_failures_and_feedback() -> None:
    """Huge trajectories are cut to the budget; every failure and its feedback survive, passes go first."""
    results = [result(f"fail-{i}", False, f"FEEDBACK-{i}: expected {i} got {i + 1}", str(i + 1), str(i)) for i in range(8)]
    results += [result(f"pass-{i}", True, answer=str(i)) for i in range(30)]
    big = "lots of tool output " * 3000
    trajs = {r.task_id: trajectory(f"question of {r.task_id}", big, f"ANSWER-{r.task_id}") for r in results}
    for budget in (3000, 6000, 12000):
        msgs = build_prompt(FILES, make_eval(results), trajs, [], max_actions=3, context_tokens=budget)
        assert count_message_tokens(msgs) <= budget
        user = msgs[1]["content"]
        for i in range(8):
            assert f"FEEDBACK-{i}: expected {i} got {i + 1}" in user
        assert "…[cut " in user
    assert "ANSWER-fail-0" in user  # the tail of a trajectory (the agent's answer) is kept


def test_small_budget_lists_left_out_failures_instead_of_overflowing() -> None:
    results = [result(f"fail-{i}", False, "feedback " * 50) for i in range(200)]
    msgs = build_prompt(FILES, make_eval(results), {}, [], max_actions=3, context_tokens=3000)
    assert count_message_tokens(msgs) <= 3000
    assert "more failed tasks left out for space" in msgs[1]["content"]


# ------------------------------------------------------------------------------------ parsing


def test_parse_well_formed_tool_calls() -> None:
    msg = {"role": "assistant", "content": "fixing", "tool_calls": [
        call("add_function", add_args()), call("revise_function", add_args("calculate", source("calculate"))),
        call("remove_function", {"name": "old"})]}
    actions, rejected = parse_actions(msg, 3)
    assert rejected == []
    assert [(a.kind, a.name) for a in actions] == [("add", "digit_sum"), ("revise", "calculate"), ("remove", "old")]
    assert actions[0].code == DIGIT_SUM
    assert actions[0].arguments["properties"]["n"]["type"] == "integer"
    assert actions[0].packages == []


def test_parse_json_string_inside_json_and_packages_string() -> None:
    """Models often send `arguments` (the schema) as a JSON string, or the whole arguments double-encoded."""
    args = add_args(arguments=json.dumps({"n": {"type": "integer"}}), packages="sympy, numpy>=1.0")
    actions, rejected = parse_actions({"tool_calls": [call("add_function", json.dumps(json.dumps(args)))]}, 3)
    assert rejected == []
    assert actions[0].arguments == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert actions[0].packages == ["sympy", "numpy"]


def test_parse_missing_optional_fields_and_fenced_code() -> None:
    actions, rejected = parse_actions({"tool_calls": [call("add_function", {"name": "digit_sum.py", "code": f"```python\n{DIGIT_SUM}```"})]}, 3)
    assert rejected == []
    a = actions[0]
    assert (a.name, a.description, a.arguments, a.packages) == ("digit_sum", "", {}, [])
    assert a.code.strip() == DIGIT_SUM.strip()


def test_parse_invalid_json_is_rejected_with_reason() -> None:
    actions, rejected = parse_actions({"tool_calls": [call("add_function", '{"name": "digit_sum", "code": "def')]}, 3)
    assert actions == []
    assert rejected[0].kind == "add" and rejected[0].name == "digit_sum" and not rejected[0].accepted
    assert rejected[0].reason.startswith("arguments are not valid JSON: ")


def test_parse_unknown_tool_and_missing_code_rejected() -> None:
    msg = {"tool_calls": [call("delete_repo", {"name": "x"}), call("revise_function", {"name": "calculate"})]}
    actions, rejected = parse_actions(msg, 3)
    assert actions == []
    assert "unknown action 'delete_repo'" in rejected[0].reason
    assert rejected[1].reason.startswith("missing code")


def test_parse_over_max_actions_rejected() -> None:
    msg = {"tool_calls": [call("remove_function", {"name": f"f{i}"}, f"c{i}") for i in range(4)]}
    actions, rejected = parse_actions(msg, 2)
    assert [a.name for a in actions] == ["f0", "f1"]
    assert [(r.name, r.reason) for r in rejected] == [("f2", "over max_actions (2 per epoch)"), ("f3", "over max_actions (2 per epoch)")]


def test_parse_content_only_json_answer() -> None:
    """A model without tool calling answers with ```json fenced actions in its text."""
    body = json.dumps([{"action": "add_function", **add_args()}, {"action": "remove_function", "name": "old"}])
    msg = {"role": "assistant", "content": f"I will add digit_sum.\n```json\n{body}\n```"}
    actions, rejected = parse_actions(msg, 3)
    assert rejected == [] and [(a.kind, a.name) for a in actions] == [("add", "digit_sum"), ("remove", "old")]
    single = {"content": json.dumps({"name": "revise_function", "arguments": add_args("calculate", CALCULATE)})}
    assert [(a.kind, a.name) for a in parse_actions(single, 3)[0]] == [("revise", "calculate")]
    assert parse_actions({"content": "TERMINATE"}, 3) == ([], [])
    example = 'The schema should be ```json\n{"type": "object", "properties": {}}\n``` and nothing else.'
    assert parse_actions({"content": example}, 3) == ([], [])  # JSON that is not an action is just text


# ------------------------------------------------------------------------------------ validation


def _reason(action: Action, current: Optional[dict[str, bytes]] = None) -> Optional[str]:
    return run(validate_action(action, FILES if current is None else current))


@pytest.mark.parametrize("name", ["../.github/workflows/x", "/etc/passwd", "a/b", "class", "a b", "_private", "os", ""])
def test_unsafe_names_rejected(name: str) -> None:
    """A name can never become a path outside functions/, a keyword or a stdlib shadow."""
    assert _reason(Action("add", name, source("x"))) is not None
    assert _reason(Action("remove", name)) is not None


def test_good_add_accepted() -> None:
    assert _reason(Action("add", "digit_sum", DIGIT_SUM)) is None


def test_syntax_error_rejected() -> None:
    reason = _reason(Action("add", "digit_sum", "def digit_sum(n: int) -> int\n    return n\n"))
    assert reason and "functions/digit_sum.py:1" in reason


def test_function_name_must_match() -> None:
    reason = _reason(Action("add", "digit_sum", source("other_name")))
    assert reason and "digit_sum" in reason


def test_module_level_call_rejected() -> None:
    reason = _reason(Action("add", "digit_sum", DIGIT_SUM + "\nprint('side effect')\n"))
    assert reason and "functions/digit_sum.py:9" in reason and "print" in reason


def test_add_existing_and_revise_or_remove_missing_rejected() -> None:
    assert "already exists" in (_reason(Action("add", "calculate", source("calculate"))) or "")
    assert "no function digit_sum" in (_reason(Action("revise", "digit_sum", DIGIT_SUM)) or "")
    assert "no function digit_sum" in (_reason(Action("remove", "digit_sum")) or "")
    assert _reason(Action("remove", "calculate")) is None  # removing the last function is allowed


def test_uninstalled_package_rejected() -> None:
    reason = _reason(Action("add", "digit_sum", DIGIT_SUM, packages=["surely_not_a_package_xyz"]))
    assert reason and "the sandbox has no package installer" in reason
    reason = _reason(Action("add", "digit_sum", "import surely_not_a_package_xyz\n\n\n" + DIGIT_SUM))
    assert reason and "surely_not_a_package_xyz" in reason
    assert _reason(Action("add", "digit_sum", DIGIT_SUM, packages=["math", "json"])) is None


@pytest.mark.skipif(not HAS_SANDBOX, reason="forgegit.sandbox is not there yet")
def test_code_that_fails_to_import_rejected() -> None:
    """The file set is imported in the sandbox: a bad import name is caught before any commit."""
    reason = _reason(Action("add", "digit_sum", "from math import no_such_name_xyz\n\n\n" + DIGIT_SUM))
    assert reason and "fails to import" in reason and "no_such_name_xyz" in reason


# ------------------------------------------------------------------------------------ applying


def test_apply_actions_is_pure_and_in_order() -> None:
    files = dict(FILES)
    out = apply_actions(files, [Action("add", "digit_sum", DIGIT_SUM), Action("remove", "calculate"),
                                Action("revise", "digit_sum", source("digit_sum"))])
    assert files == FILES
    assert out == {"digit_sum.py": source("digit_sum").encode()}
    with pytest.raises(ForgegitError):
        apply_actions(files, [Action("add", "../evil", "x")])


def test_write_actions_writes_and_deletes_under_functions(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "calculate.py").write_bytes(CALCULATE.encode())
    changed = write_actions(tmp_path, [Action("add", "digit_sum", DIGIT_SUM.rstrip("\n")), Action("remove", "calculate")])
    assert changed == ["functions/digit_sum.py", "functions/calculate.py"]
    assert (tmp_path / "functions" / "digit_sum.py").read_text() == DIGIT_SUM
    assert not (tmp_path / "functions" / "calculate.py").exists()
    assert sorted(p.name for p in (tmp_path / "functions").iterdir()) == ["digit_sum.py"]  # no temp files left
    assert write_actions(tmp_path, [Action("revise", "digit_sum", DIGIT_SUM)]) == []  # unchanged content


def test_write_actions_refuses_symlinked_functions_dir(tmp_path: Path) -> None:
    """A functions/ symlink pointing elsewhere must not let the optimizer write outside the worktree."""
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "functions").symlink_to(outside)
    with pytest.raises(ForgegitError, match="symlink"):
        write_actions(work, [Action("add", "digit_sum", DIGIT_SUM)])
    assert list(outside.iterdir()) == []


def test_write_actions_refuses_symlinked_file_and_bad_names(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    work = tmp_path / "work"
    (work / "functions").mkdir(parents=True)
    (work / "functions" / "digit_sum.py").symlink_to(victim)
    with pytest.raises(ForgegitError, match="symlink"):
        write_actions(work, [Action("revise", "digit_sum", DIGIT_SUM)])
    with pytest.raises(ForgegitError, match="refusing"):
        write_actions(work, [Action("add", "../../escape", DIGIT_SUM)])
    assert victim.read_text() == "keep"
    assert not (tmp_path / "escape.py").exists() and not (work / "escape.py").exists()


def test_commit_message_subject_body_and_trailers(tmp_path: Path) -> None:
    """git itself must read the forgegit and AI-authorship trailers."""
    msg = commit_message(3, [Action("add", "digit_sum"), Action("revise", "calculate")],
                         "Task 7 failed on digit sums.\n\nAdded a helper.", "gpt-4o-mini")
    subject, _, rest = msg.partition("\n\n")
    assert subject == "forgegit: epoch 3: add digit_sum, revise calculate"
    assert "Task 7 failed on digit sums." in rest
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=msg, capture_output=True, text=True, check=True).stdout
    assert parsed.splitlines() == [
        "Forgegit-Epoch: 3", "Forgegit-Actions: add:digit_sum,revise:calculate",
        "Co-authored-by: gpt-4o-mini <forgegit@users.noreply.github.com>"]
    assert commit_message(1, [], "", "m\n<x>").startswith("forgegit: epoch 1: no changes\n\nForgegit-Epoch: 1")


# ------------------------------------------------------------------------------------ propose


def test_action_tools_are_valid_openai_tool_schemas() -> None:
    assert [t["function"]["name"] for t in ACTION_TOOLS] == ["add_function", "revise_function", "remove_function"]
    for t in ACTION_TOOLS:
        params = t["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])


@dataclass
class FakeResult:
    message: dict[str, Any]
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=lambda: Usage(prompt_tokens=10, completion_tokens=5, calls=1))
    cached: bool = False


class FakeLLM:
    """Answers from a list of messages (or raises an exception placed in it)."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.requests: list[list[dict[str, Any]]] = []

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> FakeResult:
        self.requests.append(json.loads(json.dumps(messages)))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return FakeResult(reply)


def _propose(llm: Any, **kw: Any) -> Any:
    ev = make_eval([result("t1", False, "expected 9 got 8", "8", "9")])
    return run(propose(llm, FILES, ev, {"t1": trajectory("digit sum of 1233?", "8", "8")}, [], **kw))


def test_propose_without_repair_keeps_good_actions_and_reasons() -> None:
    llm = FakeLLM([{"role": "assistant", "content": None, "tool_calls": [
        call("add_function", add_args("../.github/workflows/x", DIGIT_SUM), "c1"), call("add_function", add_args(), "c2")]}])
    p = _propose(llm, repair=False)
    assert [(a.kind, a.name) for a in p.actions] == [("add", "digit_sum")]
    assert len(p.rejected) == 1 and "path" in p.rejected[0].reason
    assert p.rationale == "add digit_sum"  # no text from the model: a summary
    assert p.usage.calls == 1 and len(llm.requests) == 1


def test_propose_actions_apply_in_order() -> None:
    """An add then a revise of the same new function validates against the evolving file set."""
    llm = FakeLLM([{"role": "assistant", "content": "two steps", "tool_calls": [
        call("add_function", add_args(), "c1"), call("revise_function", add_args(code=DIGIT_SUM.replace("abs(n)", "n")), "c2")]}])
    p = _propose(llm)
    assert [(a.kind, a.name) for a in p.actions] == [("add", "digit_sum"), ("revise", "digit_sum")]
    assert p.rejected == [] and p.rationale == "two steps"


def test_propose_repair_failure_keeps_first_answer() -> None:
    from forgegit.llm import LLMError
    llm = FakeLLM([{"role": "assistant", "content": "try", "tool_calls": [
        call("add_function", add_args(code="def digit_sum(:\n"), "c1"), call("remove_function", {"name": "calculate"}, "c2")]},
        LLMError("rate limited", "rate_limit")])
    p = _propose(llm)
    assert [(a.kind, a.name) for a in p.actions] == [("remove", "calculate")]
    assert "repair request failed: rate limited" in p.rationale


def test_propose_end_to_end_with_repair_against_scripted_server(scripted: Callable[..., ScriptedServer]) -> None:
    """A real HTTP round trip: one bad + one good action, the rejection is sent back as a tool result, then a fix."""
    from forgegit.llm import LLM, Endpoint

    def script(request: dict[str, Any]) -> Any:
        assert [t["function"]["name"] for t in request["tools"]] == ["add_function", "revise_function", "remove_function"]
        tools_seen = [m for m in request["messages"] if m["role"] == "tool"]
        if not tools_seen:
            return tool_calls(("add_function", add_args("digit_sum", source("wrong_name"))),
                              ("revise_function", add_args("calculate", source("calculate", "return x.strip()"))),
                              content="digit sums fail; adding a helper and hardening calculate")
        return tool_calls(("add_function", add_args()), content="fixed the name")

    server = scripted(script)
    llm = LLM("opt-model", endpoint=Endpoint(server.base_url, "x"))

    async def go() -> Any:
        try:
            ev = make_eval([result("t1", False, "expected 9 got 8", "8", "9"), result("SECRET-T", False, "SECRET")])
            return await propose(llm, FILES, ev, {"t1": trajectory("digit sum of 1233?", "8", "8")}, [],
                                 max_actions=3, forbidden_task_ids={"SECRET-T"})
        finally:
            await llm.aclose()

    p = run(go())
    assert [(a.kind, a.name) for a in p.actions] == [("revise", "calculate"), ("add", "digit_sum")]
    assert [(r.kind, r.name, r.accepted) for r in p.rejected] == [("add", "digit_sum", False)]
    assert "wrong_name" in p.rejected[0].reason or "digit_sum" in p.rejected[0].reason
    assert server.calls == 2
    second = server.requests[1]["messages"]
    tool_msgs = [m for m in second if m["role"] == "tool"]
    assert len(tool_msgs) == 2 and tool_msgs[0]["content"].startswith("rejected: ") and tool_msgs[1]["content"] == "applied"
    assert second[-1]["role"] == "user" and "at most 2" in second[-1]["content"]
    assert "SECRET" not in json.dumps(server.requests)
    assert p.rationale == "digit sums fail; adding a helper and hardening calculate\n\nfixed the name"
    assert p.usage.calls == 2 and p.usage.prompt_tokens > 0
    assert [m["role"] for m in p.messages] == ["system", "user", "assistant", "tool", "tool", "user", "assistant"]
    files = apply_actions(FILES, p.actions)
    assert files["digit_sum.py"] == DIGIT_SUM.encode() and b"x.strip()" in files["calculate.py"]


def test_propose_repairs_a_content_only_answer_with_a_user_message() -> None:
    """Without tool calls there are no tool results to send: the rejections go back as a user message."""
    bad = json.dumps({"action": "add_function", **add_args(code=source("nope"))})
    good = json.dumps({"action": "add_function", **add_args()})
    llm = FakeLLM([{"role": "assistant", "content": f"```json\n{bad}\n```"},
                   {"role": "assistant", "content": f"```json\n{good}\n```"}])
    p = _propose(llm)
    assert [(a.kind, a.name) for a in p.actions] == [("add", "digit_sum")]
    assert len(p.rejected) == 1
    repair = llm.requests[1][-1]
    assert repair["role"] == "user" and "- add digit_sum: rejected: " in repair["content"]



# ------------------------------------------------------------------------------------ what the optimizer cannot do


@pytest.mark.parametrize(("name", "fragment"), [
    ("conftest", "pytest imports every conftest.py"),
    ("test_pwn", "pytest collects and runs"),
    ("sitecustomize", "at start-up"),
    ("setup", "setup.py"),
    ("__main__", "__main__.py"),
    ("python", "built-in `python` tool"),
])
def test_the_optimizer_cannot_add_a_function_a_tool_would_run_on_its_own(name: str, fragment: str) -> None:
    reason = _reason(Action("add", name, source(name)))
    assert reason is not None and fragment in reason and f"functions/{name}.py" in reason


def test_the_optimizer_cannot_add_an_oversized_function_file() -> None:
    """A 10 MB body once went through and then filled every later prompt and agent request."""
    from forgegit.functions import MAX_FILE_BYTES

    code = source("digit_sum", "return x", extra="_PAD = '" + "x" * (10 * 1024 * 1024) + "'\n\n\n")
    reason = _reason(Action("add", "digit_sum", code))
    assert reason is not None and "functions/digit_sum.py" in reason and f"{MAX_FILE_BYTES:,} bytes" in reason


def test_the_optimizer_cannot_grow_functions_past_the_total_limit() -> None:
    from forgegit.functions import MAX_FILE_BYTES, MAX_TOTAL_BYTES

    pad = "_PAD = '" + "x" * (MAX_FILE_BYTES - 400) + "'\n\n\n"
    current = {f"f{i}.py": source(f"f{i}", extra=pad).encode() for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES)}
    reason = _reason(Action("add", "digit_sum", source("digit_sum", extra=pad)), current)
    assert reason is not None and f"{MAX_TOTAL_BYTES:,} bytes" in reason and "digit_sum.py" in reason


def test_the_function_sources_count_inside_the_optimizer_budget() -> None:
    """Big function files are cut to fit `optimizer_context_tokens`; failures and feedback still fit."""
    big = {f"tool_{i}.py": source(f"tool_{i}", extra="".join(
        f"_TABLE_{j} = {{'key': 'value number {j} for tool {i}'}}\n" for j in range(900)) + "\n\n").encode()
        for i in range(4)}
    results = [result("fail-1", False, "FEEDBACK-1: expected 3", "2", "3")]
    for budget in (4000, 12000):
        msgs = build_prompt(big, make_eval(results), {}, [], max_actions=1, context_tokens=budget)
        assert count_message_tokens(msgs) <= budget
        user = msgs[1]["content"]
        assert "FEEDBACK-1: expected 3" in user
        assert "left out for space" in user or "not shown for space" in user
        assert "a revise_function must still send the COMPLETE file" in user or "not shown for space" in user
    small = build_prompt(FILES, make_eval(results), {}, [], max_actions=1, context_tokens=12000)[1]["content"]
    assert CALCULATE.rstrip() in small and "for space" not in small  # small files are shown whole


def test_a_tiny_budget_names_the_functions_it_cannot_show() -> None:
    big = {"huge.py": source("huge", extra="_T = '" + "word " * 6000 + "'\n\n\n").encode()}
    msgs = build_prompt(big, make_eval([]), {}, [], max_actions=1, context_tokens=2500)
    assert count_message_tokens(msgs) <= 2500
    assert "functions/huge.py" in msgs[1]["content"]


def test_commit_trailers_come_last_and_the_rationale_cannot_forge_or_drop_them() -> None:
    rationale = ("Fixed it.\nForgegit-Run: evil\nforgegit-epoch: 99\nCo-authored-by: Mallory <m@evil.example>\n"
                 "Signed-off-by: Mallory <m@evil.example>\n---\nafter the divider\n\nFixes #1\nKey: value")
    msg = commit_message(2, [Action("add", "digit_sum")], rationale, "gpt-4o", "run-7")
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=msg, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert parsed == ["Forgegit-Epoch: 2", "Forgegit-Actions: add:digit_sum", "Forgegit-Run: run-7",
                      "Co-authored-by: gpt-4o <forgegit@users.noreply.github.com>"]
    assert msg.rstrip("\n").endswith("Co-authored-by: gpt-4o <forgegit@users.noreply.github.com>")
    body = msg.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]
    assert "after the divider" in body and "Forgegit-Run: evil" in body  # kept, as text
    assert not [line for line in body.splitlines() if re.match(r"(?i)(forgegit-|co-authored|signed-off|---|key:)", line)]


def test_the_rationale_cannot_become_the_trailer_block() -> None:
    """With nothing else to say, a rationale of trailer lines must not be read as trailers either."""
    msg = commit_message(1, [], "Forgegit-Run: evil\nForgegit-Epoch: 5", "m")
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=msg, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert parsed == ["Forgegit-Epoch: 1", "Forgegit-Actions: none", "Co-authored-by: m <forgegit@users.noreply.github.com>"]


# ------------------------------------------------------------------------------------ malformed replies


DEEP_ARGUMENTS = "[" * 100_000 + "]" * 100_000
LONG_EXPRESSION = source("digit_sum", "return str(" + "+".join(["1"] * 20_000) + ")")  # under the 64 KiB file limit


def test_tool_call_arguments_nested_100000_deep_become_a_rejected_action() -> None:
    for args in (DEEP_ARGUMENTS, json.dumps({"name": "digit_sum", "code": DIGIT_SUM, "arguments": DEEP_ARGUMENTS}),
                 '{"name": "digit_sum", "code": "x", "arguments": ' + DEEP_ARGUMENTS + "}"):
        actions, rejected = parse_actions({"tool_calls": [call("add_function", args)]}, 3)
        assert actions == [] or actions[0].arguments == {}  # a too-deep JSON string for `arguments` is dropped
        if not actions:
            assert len(rejected) == 1 and "nested too deeply" in rejected[0].reason, rejected
    # the same in a content-only answer
    actions, rejected = parse_actions({"content": "```json\n" + DEEP_ARGUMENTS + "\n```"}, 3)
    assert actions == [] and rejected == []


def test_code_holding_a_20000_term_expression_is_rejected_not_a_crash() -> None:
    """ast.parse raises RecursionError on it (200,000 terms are also refused, by the file size limit)."""
    assert len(LONG_EXPRESSION.encode()) < 64 * 1024
    reason = run(validate_action(Action("add", "digit_sum", LONG_EXPRESSION), FILES, check=_no_import_check))
    assert reason is not None and "too deeply nested" in reason
    big = source("digit_sum", "return str(" + "+".join(["1"] * 200_000) + ")")
    reason = run(validate_action(Action("add", "digit_sum", big), FILES, check=_no_import_check))
    assert reason is not None and "over the limit of 65,536 bytes" in reason


async def _no_import_check(files: dict[str, bytes]) -> dict[str, str]:
    return {}


def test_a_huge_reply_becomes_one_rejection_and_a_bounded_rationale() -> None:
    huge = {"role": "assistant", "content": "why " * 1_500_000, "tool_calls": [call("add_function", add_args(), "c1")]}
    llm = FakeLLM([huge])
    p = _propose(llm)
    assert p.actions == [] and len(p.rejected) == 1 and "too large to read" in p.rejected[0].reason
    assert len(p.rationale) < 25_000 and len(llm.requests) == 1  # not sent back for a repair
    many = {"role": "assistant", "content": "many", "tool_calls": [call("frobnicate", {"name": f"f{i}"}, f"c{i}")
                                                                  for i in range(5000)]}
    p = _propose(FakeLLM([many]))
    assert len(p.rejected) == 33 and "4,968 more tool calls were not read" in p.rejected[-1].reason
    long_name = {"role": "assistant", "content": "x", "tool_calls": [call("add_function", add_args("n" * 100_000))]}
    p = _propose(FakeLLM([long_name]), repair=False)
    assert len(p.rejected[0].name) <= 200 and len(p.rejected[0].reason) <= 2000


@pytest.mark.parametrize("body", [
    {"choices": [{"message": {"role": "assistant", "content": {"not": "text"}, "tool_calls": ["add_function", 7]},
                  "finish_reason": "tool_calls"}]},
    {"choices": [{"message": "just a string", "finish_reason": "stop"}]},
    {"choices": ["not an object"]},
    {"choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": "many"}},
    {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "add_function", "arguments": {"name": ["x"], "code": 5}}},
        {"id": "d", "type": "function", "function": "add_function"}]}, "finish_reason": "tool_calls"}]},
])
def test_a_reply_of_any_shape_becomes_rejections_and_never_an_exception(
        body: dict[str, Any], scripted: Callable[..., ScriptedServer]) -> None:
    """Through the real client and its response cache twice: a cached malformed reply is rejected again."""
    from forgegit.cache import ResponseCache
    from forgegit.llm import LLM, Endpoint

    server = scripted(lambda request: {"id": "x", "object": "chat.completion", **body})
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(Path(tmp) / "cache.sqlite")
        for _ in range(2):
            llm = LLM("opt-model", endpoint=Endpoint(server.base_url, "x"), cache=cache, max_retries=0)

            async def go() -> Any:
                try:
                    return await _propose_async(llm)
                finally:
                    await llm.aclose()

            p = run(go())
            assert p.actions == []
            assert all(r.reason for r in p.rejected)
        cache.close()


async def _propose_async(llm: Any) -> Any:
    ev = make_eval([result("t1", False, "expected 9 got 8", "8", "9")])
    return await propose(llm, FILES, ev, {}, [], check_imports=_no_import_check)


def test_an_optimizer_that_times_out_gives_an_epoch_without_an_edit_not_the_end_of_the_run() -> None:
    """A small local model can take longer than `timeout` to answer the optimizer's prompt: that epoch
    proposes nothing (and counts toward patience); training goes on instead of exiting."""
    from forgegit.llm import LLMError
    p = _propose(FakeLLM([LLMError("http://127.0.0.1/v1 gave no reply within 300s: raise `timeout`", "timeout")]))
    assert p.actions == [] and p.rejected == []
    assert p.rationale.startswith("no edit: the optimizer gave no reply in time") and "raise `timeout`" in p.rationale
