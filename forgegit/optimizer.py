"""The optimizer: an LLM that reads the last evaluation and proposes add/revise/remove actions on
`functions/<name>.py`, AgentOptimizer-style; actions are validated before anything is written."""
from __future__ import annotations

import ast
import importlib.util
import json
import keyword
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional

from . import safejson
from .errors import ForgegitError
from .records import ActionRecord, EvalResult, TaskResult, Usage
from .tokens import count_message_tokens, count_tokens, trim_to_tokens

FUNCTIONS_DIR = "functions"
KINDS = {"add_function": "add", "revise_function": "revise", "remove_function": "remove"}
TOOL_OF = {v: k for k, v in KINDS.items()}
TOOL_OUTPUT_TOKENS = 300  # a single tool output or message in a trajectory is cut to this first
MESSAGE_TOKENS = 600
FEEDBACK_TOKENS = 400  # the checker's feedback of one task, kept whole up to this
MIN_BODY_TOKENS = 120  # a passed task's conversation shorter than this budget is left out
HISTORY_LINES = 30
FUNCTIONS_SHARE = 2  # the function sources take at most 1/FUNCTIONS_SHARE of the prompt's room
SCHEMA_TOKENS = 300  # a function's schema line in the prompt is cut to this
PROBLEMS_SHOWN = 8  # problems listed per broken file
MIN_SOURCE_TOKENS = 60  # a file whose share is smaller than this is listed by name only
OMITTED_NAMES = 30
# A reply is untrusted input: whatever it holds becomes rejected actions with reasons, never an exception.
MAX_ARGUMENT_BYTES = 1 << 20  # one tool call's arguments (a function file is at most 64 KiB)
MAX_ARGUMENT_DEPTH = 64  # JSON levels in one tool call's arguments
MAX_REPLY_CHARS = 4 << 20  # the text and arguments of one reply, all told; beyond it nothing is read
MAX_TOOL_CALLS = 32  # tool calls read from one reply; the rest are named in one rejection
MAX_RATIONALE_CHARS = 20000  # of the reply's text kept as the epoch's rationale (in its note and commit)
MAX_RECORD_NAME = 200  # characters of a name in an action record
MAX_RECORD_REASON = 2000  # characters of a rejection reason
TRAILER_EMAIL = "forgegit@users.noreply.github.com"
EPOCH_TRAILER = "Forgegit-Epoch"
ACTIONS_TRAILER = "Forgegit-Actions"
RUN_TRAILER = "Forgegit-Run"
REVERT_TRAILER = "Forgegit-Reverts-Epoch"

_NAME = {"type": "string", "description": "The function's name: a Python identifier, also the file name functions/<name>.py."}
_DESCRIPTION = {"type": "string", "description": "One line: what the function does (it must match the docstring's first line)."}
_ARGUMENTS = {
    "type": "object",
    "description": 'JSON schema of the parameters, e.g. {"type": "object", "properties": {"n": {"type": "integer", '
                   '"description": "The number."}}, "required": ["n"]}. It must agree with the type hints in code.',
}
_PACKAGES = {
    "type": "string",
    "description": "Packages the code imports beyond the Python standard library, comma separated; empty for none. "
                   "The sandbox has no package installer: prefer the standard library.",
}
_CODE = {
    "type": "string",
    "description": "The COMPLETE source of functions/<name>.py: imports, one public typed function named <name> with a "
                   "Google-style docstring (the tool description the agent sees), optional private _helpers.",
}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


ACTION_TOOLS: list[dict[str, Any]] = [
    _tool("add_function", "Add a new function file functions/<name>.py. The function in code MUST be named <name>.",
          {"name": _NAME, "description": _DESCRIPTION, "arguments": _ARGUMENTS, "packages": _PACKAGES, "code": _CODE},
          ["name", "description", "arguments", "code"]),
    _tool("revise_function", "Replace the source of an existing function file functions/<name>.py with new complete "
          "source. The function in code MUST keep the name <name>.",
          {"name": _NAME, "description": _DESCRIPTION, "arguments": _ARGUMENTS, "packages": _PACKAGES, "code": _CODE},
          ["name", "description", "arguments", "code"]),
    _tool("remove_function", "Delete functions/<name>.py: the agent will no longer have this function.",
          {"name": {"type": "string", "description": "The name of an existing function."}}, ["name"]),
]

SYSTEM_PROMPT = """You are a function optimizer. An assistant (the agent) solves tasks by calling a set of Python functions as tools; you maintain that set of functions so the agent solves more tasks. Each function lives in its own file functions/<name>.py and is trained like a weight: every epoch you see how the agent did with the current functions, and you change them with actions.

The actions (tools) you have:
1. add_function: add one new function.
2. revise_function: replace the source of one existing function.
3. remove_function: remove one existing function.
Take at most {max_actions} actions in this reply. If the current functions are already the best you can make them, take no action and say why.

Principles for revising a function:
1. Pay most attention to the failed tasks and the checker's feedback on them, and fix the functions used in those tasks.
2. A failed function call can come from wrong or missing arguments or from a wrong implementation. Focus on the implementation and make the function easy to call correctly: clear parameter names, forgiving input parsing, error messages that tell the agent what to do instead.
3. Do not revise a function that works well and plays a critical role in the tasks that passed. Only revise when needed.
4. Keep the function's name: the file name, the function name and the name the agent calls must agree.
Principles for removing a function:
1. Only remove a function that is wrong and cannot be fixed, or that the agent is better off without.
Principles for adding a function:
1. The added function should be general enough to be used in future tasks: if a task needs it, or one step of it, the agent can call it instead of starting from scratch.
2. It should solve a higher-level problem that covers the original task, generalizing the code so it applies more widely. An example worth adding for math problems: evaluate_expression(expression: str) -> str, which evaluates an arithmetic expression given as a string.
3. Replace task-specific strings and numbers with parameters: everything the function works on is passed in as an argument.
4. Never hard-code the answers of the tasks you see: the functions are judged on tasks you never see.

Rules of a function file (a file that breaks them is rejected):
- `code` is the COMPLETE source of functions/<name>.py, not a fragment.
- Exactly one public function, named exactly <name> (an ASCII Python identifier, not a keyword, not the name of a standard-library module); helpers are private (_name).
- Every parameter and the return value have type hints (str, int, float, bool, list, dict, Optional[...]); the return value is JSON-serializable, usually str or a number.
- A Google-style docstring: a one-line summary (the tool description the agent sees), then an Args: section with one line per parameter.
- Top level holds only imports, constants, function definitions and the docstring: no code that runs at import.
- Only the Python standard library (and packages already importable): the sandbox has no package installer, no network and no files to write.
- The function runs in a sandbox with a time limit: return a helpful error string rather than raising for bad input.
"""

USER_PROMPT = """## Current functions
{functions}
({count} in all)

## Score history (epochs whose score did not improve were reverted: do not repeat their changes)
{history}

## The last evaluation: {passed}/{total} tasks passed
Failed tasks come first, each with the checker's feedback, then passed ones. Long outputs are cut.

{trajectories}

## Your turn
Study why the failed tasks failed, then take at most {max_actions} actions (add_function, revise_function, remove_function) that will make the agent solve more tasks of this kind. First explain in a few sentences what went wrong and what you change; then call the tools. Try your best to improve the functions: take no action only if you are sure the current ones are the best you can make.
"""

REPAIR_PROMPT = """Some actions were rejected and nothing of them was applied; the accepted ones are applied. Send corrected actions for the rejected ones (at most {left}), following the rules of a function file, or take no action to leave them out."""


@dataclass
class Action:
    """One proposed change to functions/: add, revise or remove the function `name`."""

    kind: str  # "add" | "revise" | "remove"
    name: str
    code: str = ""
    description: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)

    def record(self, accepted: bool = True, reason: str = "") -> ActionRecord:
        return _record(self.kind, self.name, accepted, reason)


def _record(kind: str, name: str, accepted: bool, reason: str = "") -> ActionRecord:
    """An action record with its model-chosen texts cut to a size a note and a log line can hold."""
    def cut(text: str, limit: int) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return ActionRecord(cut(str(kind), 40), cut(str(name), MAX_RECORD_NAME), accepted, cut(str(reason), MAX_RECORD_REASON))


@dataclass
class Proposal:
    """What the optimizer proposed: accepted actions, rejected ones with reasons, its rationale, cost and conversation."""

    actions: list[Action]
    rejected: list[ActionRecord]
    rationale: str
    usage: Usage
    messages: list[dict[str, Any]]

    @property
    def records(self) -> list[ActionRecord]:
        return [a.record() for a in self.actions] + list(self.rejected)


# ---------------------------------------------------------------------------------------- prompt


def _file_of(name: str) -> str:
    return f"{name}.py"


def _specs(functions: dict[str, bytes]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """({file name: OpenAI tool schema}, {file name: problems}) of the current files."""
    try:
        from . import functions as fmod
        specs, problems = fmod.load_specs(functions)
    except Exception:  # the schema is a courtesy to the optimizer; the source is what matters
        return {}, {}
    by_file: dict[str, list[str]] = {}
    for p in problems:
        by_file.setdefault(os.path.basename(str(p.path)), []).append(str(p))
    return {_file_of(s.name): s.tool() for s in specs}, by_file


def _fence(source: str) -> str:
    """A code fence longer than any run of backticks in source, so the source cannot close it."""
    longest = max((len(run) for run in re.findall(r"`{3,}", source)), default=2)
    return "`" * (longest + 1)


def _function_block(fname: str, source: str, schema: Optional[dict[str, Any]], problems: list[str], cut: bool) -> str:
    """One file of the prompt: its (possibly cut) source, the schema the agent sees and its problems."""
    head = f"### functions/{fname}"
    if cut:
        head += " (cut for space; a revise_function must still send the COMPLETE file)"
    fence = _fence(source)
    block = f"{head}\n{fence}python\n{source}\n{fence}"
    if schema is not None:
        block += "\nSchema the agent sees: " + trim_to_tokens(json.dumps(schema, ensure_ascii=False), SCHEMA_TOKENS)
    if problems:
        more = f"\n- (and {len(problems) - PROBLEMS_SHOWN} more)" if len(problems) > PROBLEMS_SHOWN else ""
        block += "\nProblems (the agent cannot use this file until they are fixed):\n" + "\n".join(
            f"- {p}" for p in problems[:PROBLEMS_SHOWN]) + more
    return block


def _render_functions(functions: dict[str, bytes], budget: Optional[int] = None) -> str:
    """The current files for the prompt, within budget tokens when given.

    Files that fit are shown whole. Over budget, each file gets a fair share, smallest first (what a
    small file does not use goes to the bigger ones); a file's source is cut in the middle to its share,
    and files whose share cannot hold a useful part are listed by name only."""
    if not functions:
        return "(none yet: add the first ones)"
    schemas, problems = _specs(functions)
    sources = {f: functions[f].decode("utf-8", "replace").rstrip() for f in sorted(functions)}
    info = {f: ((schemas[f]["function"] if f in schemas else None), problems.get(f, [])) for f in sources}
    whole = {f: _function_block(f, sources[f], *info[f], cut=False) for f in sources}
    text = "\n\n".join(whole.values())
    if budget is None or count_tokens(text) <= budget:
        return text
    costs = {f: count_tokens(block) for f, block in whole.items()}
    shown: dict[str, str] = {}
    omitted: list[str] = []
    left = budget - 40  # room for the line naming left-out files
    order = sorted(sources, key=lambda f: (costs[f], f))
    for i, f in enumerate(order):
        share = left // (len(order) - i) - 2
        if costs[f] <= share:
            block = whole[f]
        else:
            room = share - count_tokens(_function_block(f, "", *info[f], cut=True)) - 8
            if room < MIN_SOURCE_TOKENS:
                omitted.append(f)
                continue
            marker = "…[N tokens of this file left out for space]…"
            block = _function_block(f, trim_to_tokens(sources[f], room, marker=marker), *info[f], cut=True)
        shown[f] = block
        left -= count_tokens(block) + 2
    out = [shown[f] for f in sorted(shown)]
    if omitted:
        names = ", ".join(f"functions/{f}" for f in sorted(omitted)[:OMITTED_NAMES])
        more = f" and {len(omitted) - OMITTED_NAMES} more" if len(omitted) > OMITTED_NAMES else ""
        out.append(f"({len(omitted)} function files not shown for space: {names}{more})")
    return "\n\n".join(out)


def _render_history(history: list[dict[str, Any]]) -> str:
    if not history:
        return "(no epochs yet)"
    lines = []
    for h in history[-HISTORY_LINES:]:
        score = h.get("score")
        score_s = f"{score:.3f}" if isinstance(score, (int, float)) else str(score)
        kept = h.get("kept")
        status = "baseline" if kept is None else ("kept" if kept else "reverted")
        lines.append(f"- epoch {h.get('epoch')}: score {score_s}, {status}; actions: {_actions_text(h.get('actions'))}")
    if len(history) > HISTORY_LINES:
        lines.insert(0, f"- ({len(history) - HISTORY_LINES} earlier epochs not shown)")
    return "\n".join(lines)


def _actions_text(actions: Any) -> str:
    if not actions:
        return "none"
    if isinstance(actions, str):
        return actions
    out = []
    for a in actions:
        if isinstance(a, dict):
            text = f"{a.get('kind', '?')}:{a.get('name', '?')}"
            if a.get("accepted") is False:
                text += " (rejected)"
        elif isinstance(a, (Action, ActionRecord)):
            text = f"{a.kind}:{a.name}" + (" (rejected)" if getattr(a, "accepted", True) is False else "")
        else:
            text = str(a)
        out.append(text)
    return ", ".join(out)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _render_conversation(messages: list[dict[str, Any]]) -> str:
    """A trajectory as plain lines: the question, each call with its arguments, each tool output (cut), the answer."""
    names: dict[str, str] = {}
    lines = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue  # the agent's system prompt is the same in every task
        limit = TOOL_OUTPUT_TOKENS if role == "tool" else MESSAGE_TOKENS
        text = trim_to_tokens(_content_text(m.get("content")).strip(), limit)
        if role == "tool":
            name = names.get(str(m.get("tool_call_id")), m.get("name") or "tool")
            lines.append(f"[{name} returned] {text}")
            continue
        if text:
            lines.append(f"[{role}] {text}")
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            names[str(call.get("id"))] = str(fn.get("name"))
            args = trim_to_tokens(str(fn.get("arguments", "")), TOOL_OUTPUT_TOKENS)
            lines.append(f"[{role} calls] {fn.get('name')}({args})")
    return "\n".join(lines) if lines else "(empty)"


def _header(r: TaskResult) -> str:
    if r.passed:
        return f"### Task {r.task_id}: PASSED\nanswer: {trim_to_tokens(str(r.answer), 80)}"
    feedback = trim_to_tokens(str(r.feedback).strip(), FEEDBACK_TOKENS) or "(none)"
    return (f"### Task {r.task_id}: FAILED ({r.failure or 'wrong_answer'})\n"
            f"expected: {trim_to_tokens(str(r.expected), 80)}\nanswer: {trim_to_tokens(str(r.answer), 80)}\n"
            f"checker feedback: {feedback}")


def _ordered_results(last_eval: EvalResult, forbidden: frozenset[str]) -> list[TaskResult]:
    """The evaluation's tasks, failures first, without any forbidden (sealed) task."""
    results = [r for r in last_eval.results if str(r.task_id) not in forbidden]
    return [r for r in results if not r.passed] + [r for r in results if r.passed]


def _fit_trajectories(results: list[TaskResult], bodies: dict[str, str], budget: int) -> str:
    """Task blocks within budget tokens: failure headers (with feedback) first, then conversations by fair share."""
    failed = [r for r in results if not r.passed]
    passed = [r for r in results if r.passed]
    headers: dict[str, str] = {}
    used = 0
    omitted_failed: list[str] = []
    for r in failed:
        h = _header(r)
        cost = count_tokens(h) + 2
        if used + cost > budget:
            omitted_failed.append(str(r.task_id))
            continue
        headers[str(r.task_id)] = h
        used += cost
    blocks: list[str] = []
    shown = [r for r in failed if str(r.task_id) in headers] + passed
    omitted_passed: list[str] = []
    for i, r in enumerate(shown):
        tid = str(r.task_id)
        header = headers.get(tid) or _header(r)
        if r.passed:
            cost = count_tokens(header) + 2
            if used + cost > budget:
                omitted_passed.append(tid)
                continue
            used += cost
        body = bodies.get(tid, "(no trajectory recorded)")
        left = budget - used
        share = left // max(1, len(shown) - i) - 4
        if share < MIN_BODY_TOKENS:
            share = min(left - 4, MIN_BODY_TOKENS) if not r.passed else 0
        body = trim_to_tokens(body, share) if share > 0 else ""
        block = header + ("\nconversation:\n" + body if body else "")
        used += count_tokens(block) - count_tokens(header) + (2 if body else 0)
        blocks.append(block)
    if omitted_failed:
        blocks.append(f"({len(omitted_failed)} more failed tasks left out for space: {', '.join(omitted_failed[:20])})")
    if omitted_passed:
        blocks.append(f"({len(omitted_passed)} more passed tasks left out for space)")
    return "\n\n".join(blocks) if blocks else "(no tasks recorded)"


PROMPT_MARGIN = 1.2  # forgegit counts cl100k-like tokens; a local model's tokenizer may count a fifth more
SCHEMA_MARGIN = 1.5  # chat templates spell tool schemas out at more length than their JSON
TEMPLATE_TOKENS = 128  # role markers and the template's own words


def fit_to_window(context_tokens: int, window: Optional[int], reply_tokens: int,
                  tools: Optional[list[dict[str, Any]]] = None) -> int:
    """The optimizer prompt's budget: context_tokens, or less where the model's context window must
    also hold the tool schemas, the reply (up to a quarter of the window) and a margin for a tokenizer
    that counts more than forgegit's estimate."""
    if not window:
        return context_tokens
    schemas = int(count_tokens(json.dumps(tools, ensure_ascii=False)) * SCHEMA_MARGIN) if tools else 0
    reply = min(reply_tokens, window // 4) if reply_tokens > 0 else window // 4
    room = int((window - schemas - reply - TEMPLATE_TOKENS) / PROMPT_MARGIN)
    return max(256, min(context_tokens, room))


async def window_budget(llm: Any, context_tokens: int, model: Optional[str]) -> int:
    """fit_to_window for this client's model: its `context_window` setting or what its server reports."""
    limit = getattr(llm, "context_limit", None)
    if limit is None:
        return context_tokens
    window = await limit(model)
    return fit_to_window(context_tokens, window, int(getattr(llm, "max_tokens", 0) or 0), ACTION_TOOLS)


def build_prompt(
    functions: dict[str, bytes],
    last_eval: EvalResult,
    trajectories: dict[str, list[dict[str, Any]]],
    history: list[dict[str, Any]],
    *,
    max_actions: int,
    context_tokens: int,
    forbidden_task_ids: Iterable[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The optimizer's system and user messages, trimmed to context_tokens; forbidden tasks never appear.

    The function sources count inside the budget: they are shown whole while they fit in half of the
    room the prompt leaves, else cut (see _render_functions). The evaluation's tasks get the rest
    (passed ones trimmed first, then conversations, never a failure's feedback while it fits).
    """
    forbidden = frozenset(str(t) for t in forbidden_task_ids)
    results = _ordered_results(last_eval, forbidden)
    shown = {str(r.task_id) for r in results}
    bodies = {str(k): _render_conversation(v) for k, v in trajectories.items() if str(k) in shown}
    passed, total = sum(1 for r in results if r.passed), len(results)
    system = SYSTEM_PROMPT.format(max_actions=max_actions)
    history_text = _render_history(history)

    def messages(traj_text: str, functions_text: str) -> list[dict[str, Any]]:
        user = USER_PROMPT.format(
            count=len(functions), functions=functions_text, history=history_text,
            passed=passed, total=total, trajectories=traj_text, max_actions=max_actions)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    room = context_tokens - count_message_tokens(messages("", "")) - max(16, context_tokens // 50)
    functions_text = _render_functions(functions, max(0, room // FUNCTIONS_SHARE))
    fixed = count_message_tokens(messages("", functions_text))
    budget = context_tokens - fixed - max(16, context_tokens // 50)  # slack for the approximation at joins
    text = _fit_trajectories(results, bodies, budget)
    while count_message_tokens(messages(text, functions_text)) > context_tokens and budget > 0:
        budget -= max(16, budget // 10)
        text = _fit_trajectories(results, bodies, budget)
    return messages(text, functions_text)


# ---------------------------------------------------------------------------------------- parsing


def _loads(text: str) -> Any:
    return safejson.loads(text, max_depth=MAX_ARGUMENT_DEPTH, max_bytes=MAX_ARGUMENT_BYTES)


def _loads_forgiving(raw: Any) -> Any:
    """JSON that may be wrapped in quotes or encoded twice (both happen with tool-call arguments).
    Too deep or too large is a ValueError (safejson.JSONError) like any other bad JSON."""
    if not isinstance(raw, str):
        if safejson.depth(raw) > MAX_ARGUMENT_DEPTH:
            raise safejson.JSONError(f"nested too deeply: at most {MAX_ARGUMENT_DEPTH} levels")
        return raw
    text = raw.strip()
    try:
        value = _loads(text)
    except safejson.JSONError as exc:
        stripped = text.strip('"')
        if stripped == text or "nested too deeply" in str(exc) or "too large" in str(exc):
            raise
        value = _loads(stripped)
    for _ in range(2):
        if isinstance(value, str) and value.strip()[:1] in ("{", "["):
            value = _loads(value)
    return value


def _packages(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    out = []
    for item in items:
        name = re.split(r"[<>=!~\[;\s]", str(item).strip(), maxsplit=1)[0].strip()
        if name and name.lower() not in ("none", "null", "stdlib", "-") and name not in out:
            out.append(name)
    return out


def _schema(value: Any) -> dict[str, Any]:
    """A JSON schema object from a dict or a JSON string; bare properties get wrapped; unparseable -> {}."""
    try:
        value = _loads_forgiving(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    if value and "type" not in value and "properties" not in value and all(isinstance(v, dict) for v in value.values()):
        return {"type": "object", "properties": value}
    return value


def _strip_fences(code: str) -> str:
    m = re.fullmatch(r"\s*```[\w+-]*\n(.*?)\n?```\s*", code, re.S)
    return m.group(1) if m else code


def _action(kind: str, args: dict[str, Any]) -> Action:
    """An Action from parsed arguments; ValueError says what is missing."""
    name = args.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("missing name")
    name = re.sub(r"^(\w+)\.py$", r"\1", name.strip())  # "digit_sum.py" means digit_sum; paths stay paths
    if kind == "remove":
        return Action("remove", name.strip())
    code = args.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError("missing code: send the complete source of the file")
    return Action(kind, name.strip(), _strip_fences(code), str(args.get("description") or ""),
                  _schema(args.get("arguments")), _packages(args.get("packages")))


def _name_hint(raw: Any) -> str:
    m = re.search(r'"name"\s*:\s*"([^"]{1,100})"', str(raw))
    return m.group(1) if m else ""


def _parse_call(tool: str, raw: Any) -> tuple[Optional[Action], Optional[ActionRecord]]:
    kind = KINDS.get(tool)
    if kind is None:
        return None, _record(tool or "?", _name_hint(raw), False,
                             f"unknown action {tool[:100]!r}: use add_function, revise_function or remove_function")
    try:
        args = _loads_forgiving(raw if raw not in (None, "") else "{}")
    except ValueError as exc:
        return None, _record(kind, _name_hint(raw), False, f"arguments are not valid JSON: {exc}")
    if not isinstance(args, dict):
        return None, _record(kind, "", False, f"arguments are not valid JSON: expected an object, got {type(args).__name__}")
    try:
        return _action(kind, args), None
    except ValueError as exc:
        return None, _record(kind, str(args.get("name") or ""), False, str(exc))


def _content_calls(content: str) -> list[tuple[str, Any]]:
    """(tool name, arguments) pairs from a plain-text answer holding a JSON object or list of actions."""
    candidates = re.findall(r"```(?:json)?\s*\n(.*?)```", content, re.S) or [content]
    for text in candidates:
        text = text.strip()
        if text[:1] not in ("{", "["):  # from the first opening bracket to the last closing one
            start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
            end = max(text.rfind("}"), text.rfind("]"))
            if start < 0 or end <= start:
                continue
            text = text[start:end + 1]
        try:
            data = _loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("actions"), list):
            data = data["actions"]
        items = data if isinstance(data, list) else [data]
        calls = [c for c in (_content_call(i) for i in items if isinstance(i, dict)) if c is not None]
        if calls:
            return calls
    return []


def _content_call(item: dict[str, Any]) -> Optional[tuple[str, Any]]:
    fn = item.get("function")
    if isinstance(fn, dict) and "name" in fn:  # {"function": {"name": ..., "arguments": ...}}
        return str(fn["name"]), fn.get("arguments")
    if item.get("name") in KINDS and "arguments" in item:  # {"name": "add_function", "arguments": {...}}
        return str(item["name"]), item["arguments"]
    for key in ("action", "kind", "tool", "type", "function"):
        value = item.get(key)
        if isinstance(value, str) and (value in KINDS or value in TOOL_OF):  # other JSON in the text is not an action
            tool = value if value in KINDS else TOOL_OF[value]
            args = {k: v for k, v in item.items() if k != key}
            if isinstance(args.get("arguments"), dict) and "name" not in args:
                args = args["arguments"]
            return tool, args
    return None


def reply_size(message: dict[str, Any]) -> int:
    """Characters of a reply's text and tool-call arguments."""
    size = len(_content_text(message.get("content")))
    for c in _tool_call_list(message):
        fn = _function_of(c)
        args = fn.get("arguments")
        size += len(args) if isinstance(args, str) else len(str(args)) if args is not None else 0
    return size


def _function_of(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function")
    return fn if isinstance(fn, dict) else {}


def _tool_call_list(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _unreadable(message: dict[str, Any]) -> Optional[ActionRecord]:
    """Why nothing of a reply is read (it is too large), or None."""
    size = reply_size(message)
    if size > MAX_REPLY_CHARS:
        return _record("reply", "", False, f"the reply is too large to read ({size:,} characters of text and arguments; "
                                           f"at most {MAX_REPLY_CHARS:,}): nothing in it was applied")
    return None


def parse_actions(message: dict[str, Any], max_actions: int) -> tuple[list[Action], list[ActionRecord]]:
    """Actions from an assistant message's tool calls (or a JSON answer in its text); rejects with reasons.
    Any message, however malformed, gives actions and rejections, never an exception."""
    too_big = _unreadable(message)
    if too_big is not None:
        return [], [too_big]
    calls: list[tuple[Any, Any]] = []
    for c in _tool_call_list(message):
        fn = _function_of(c)
        calls.append((fn.get("name", ""), fn.get("arguments")))
    if not calls:
        calls = _content_calls(_content_text(message.get("content")))
    actions: list[Action] = []
    rejected: list[ActionRecord] = []
    for tool, raw in calls[:MAX_TOOL_CALLS]:
        action, record = _parse_call(str(tool), raw)
        if record is not None:
            rejected.append(record)
        elif action is not None and len(actions) >= max_actions:
            rejected.append(action.record(False, f"over max_actions ({max_actions} per epoch)"))
        elif action is not None:
            actions.append(action)
    if len(calls) > MAX_TOOL_CALLS:
        rejected.append(_record("reply", "", False, f"{len(calls) - MAX_TOOL_CALLS:,} more tool calls were not read "
                                                    f"(at most {MAX_TOOL_CALLS} per reply)"))
    return actions, rejected


# ---------------------------------------------------------------------------------------- validation


def name_problem(name: str) -> Optional[str]:
    """Why name cannot be a function file name (path parts, non-identifiers, keywords), or None."""
    if not isinstance(name, str) or not name:
        return "missing name"
    if "/" in name or "\\" in name or ".." in name or os.path.isabs(name):
        return f"name {name!r} is a path: use a plain Python identifier"
    if not name.isidentifier() or not name.isascii():
        return f"name {name!r} is not a Python identifier"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"name {name!r} is a Python keyword"
    from .functions import reserved_name_reason
    reserved = reserved_name_reason(name)
    if reserved:
        return f"name {name!r} is reserved: {reserved}"
    if name.startswith("_"):
        return f"name {name!r} is private (starts with _): public functions only"
    try:
        from .functions import validate_name
    except ImportError:
        return None
    return validate_name(name)


def _code_problems(name: str, code: str) -> list[str]:
    """Problems of a function file's source: functions.check_source's, or a basic check when it is unavailable."""
    path = f"{FUNCTIONS_DIR}/{_file_of(name)}"
    try:
        tree = ast.parse(code, filename=path)
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno or 0}: syntax error: {exc.msg}"]
    except (RecursionError, MemoryError):  # e.g. an expression of 200,000 terms
        return [f"{path}:1: the code is too deeply nested to parse"]
    except ValueError as exc:  # e.g. a null byte
        return [f"{path}:1: cannot parse the code: {exc}"]
    try:
        from .functions import check_source
    except ImportError:
        problems = _basic_module_problems(path, tree)
    else:
        problems = [str(p) for p in check_source(path, code, expected_name=name)]
    if problems:
        return problems
    public = [n.name for n in tree.body
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]
    if public != [name]:  # a backstop: the file name, the function name and the tool name must agree
        found = ", ".join(public) or "none"
        return [f"{path}:1: the file must define exactly one public function named {name} (found: {found})"]
    return []


def _basic_module_problems(path: str, tree: ast.Module) -> list[str]:
    """Top-level statements that run code at import (used only when forgegit.functions is unavailable)."""
    out = []
    for i, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and not any(
                isinstance(n, (ast.Call, ast.Await, ast.Lambda)) for n in ast.walk(node)):
            continue
        out.append(f"{path}:{node.lineno}: module-level code runs at import: only imports, constants and definitions")
    return out


def package_problem(package: str) -> Optional[str]:
    """Why a declared package is unusable in the sandbox, or None for the stdlib and importable packages."""
    top = package.replace("-", "_").split(".")[0]
    if top in sys.stdlib_module_names:
        return None
    try:
        if importlib.util.find_spec(top) is not None:
            return None
    except (ImportError, ValueError):
        pass
    return f"package {package!r} is not available: the sandbox has no package installer (use the standard library)"


def _imported_modules(code: str) -> list[str]:
    """Top-level modules the code imports (absolute imports only), read without running it."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return []
    out: list[str] = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        out += [n.split(".")[0] for n in names if n.split(".")[0] not in out]
    return out


ImportCheck = Callable[[dict[str, bytes]], Awaitable[dict[str, str]]]  # {file: why it cannot be imported}


async def _import_error(files: dict[str, bytes], fname: str, check: Optional[ImportCheck]) -> Optional[str]:
    """The sandbox's import error for fname in this file set, or None."""
    if check is None:
        from .sandbox import check_imports
        check = check_imports
    errors = await check(files)
    return errors.get(fname) or errors.get(f"{FUNCTIONS_DIR}/{fname}")


async def validate_action(action: Action, current: dict[str, bytes], check: Optional[ImportCheck] = None) -> Optional[str]:
    """Why action cannot be applied to the file set current, or None when it can."""
    if action.kind not in TOOL_OF:
        return f"unknown action kind {action.kind!r}"
    problem = name_problem(action.name)
    if problem:
        return problem
    fname = _file_of(action.name)
    if action.kind == "add" and fname in current:
        return f"function {action.name} already exists: use revise_function"
    if action.kind in ("revise", "remove") and fname not in current:
        return f"there is no function {action.name}: use add_function"
    if action.kind == "remove":
        return None
    from .functions import size_problem, total_size_problem
    after = apply_actions(current, [action])
    sizes = {f"{FUNCTIONS_DIR}/{f}": len(data) for f, data in sorted(after.items()) if f != fname}
    sizes[f"{FUNCTIONS_DIR}/{fname}"] = len(after[fname])  # last: the limit is reported on this file
    too_big = size_problem(f"{FUNCTIONS_DIR}/{fname}", len(after[fname])) or total_size_problem(sizes)
    if too_big:
        return str(too_big)
    problems = _code_problems(action.name, action.code)
    if problems:
        return "; ".join(problems[:8]) + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
    for package in [*action.packages, *_imported_modules(action.code)]:
        problem = package_problem(package)
        if problem:
            return problem
    error = await _import_error(after, fname, check)
    if error:
        return f"functions/{fname} fails to import: {error.strip().splitlines()[-1] if error.strip() else error}"
    return None


# ---------------------------------------------------------------------------------------- proposing


def _summary(actions: list[Action]) -> str:
    return ", ".join(f"{a.kind} {a.name}" for a in actions)


def _tool_outcomes(message: dict[str, Any], outcomes: list[tuple[Optional[Action], Optional[ActionRecord]]]) -> list[dict[str, Any]]:
    """One tool message per tool call of message, saying whether its action was applied and why not."""
    out = []
    for call, (action, record) in zip(_tool_call_list(message), outcomes):
        text = "applied" if record is None else f"rejected: {record.reason}"
        out.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": text})
    return out


async def _validate_all(actions: list[Action], current: dict[str, bytes], check: Optional[ImportCheck]
                        ) -> tuple[list[Action], list[ActionRecord], dict[str, bytes], dict[int, ActionRecord]]:
    """Validate actions in order against the evolving file set; (accepted, rejected, new files, rejections by index)."""
    accepted: list[Action] = []
    rejected: list[ActionRecord] = []
    by_index: dict[int, ActionRecord] = {}
    for i, action in enumerate(actions):
        reason = await validate_action(action, current, check)
        if reason:
            record = action.record(False, reason)
            rejected.append(record)
            by_index[i] = record
        else:
            accepted.append(action)
            current = apply_actions(current, [action])
    return accepted, rejected, current, by_index


def _outcomes_per_call(message: dict[str, Any], max_actions: int, actions: list[Action],
                       by_index: dict[int, ActionRecord]) -> list[tuple[Optional[Action], Optional[ActionRecord]]]:
    """Match each tool call of message to its outcome (parse rejections are re-derived call by call)."""
    out: list[tuple[Optional[Action], Optional[ActionRecord]]] = []
    parsed = 0
    for call in _tool_call_list(message):
        fn = _function_of(call)
        action, record = _parse_call(str(fn.get("name", "")), fn.get("arguments"))
        if record is None and action is not None:
            if parsed >= max_actions:
                record = action.record(False, f"over max_actions ({max_actions} per epoch)")
            else:
                record = by_index.get(parsed)
                action = actions[parsed]
            parsed += 1
        out.append((action, record))
    return out


def _repair_messages(message: dict[str, Any], max_actions: int, actions: list[Action],
                     by_index: dict[int, ActionRecord], rejected: list[ActionRecord], left: int) -> list[dict[str, Any]]:
    prompt = REPAIR_PROMPT.format(left=left)
    if _tool_call_list(message):
        outcomes = _outcomes_per_call(message, max_actions, actions, by_index)
        return _tool_outcomes(message, outcomes) + [{"role": "user", "content": prompt}]
    lines = "\n".join(f"- {r.kind} {r.name or '?'}: rejected: {r.reason}" for r in rejected)
    return [{"role": "user", "content": f"{lines}\n\n{prompt}"}]


# What reading a malformed reply raises (the API's own failures are ForgegitError and propagate).
_READ_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError, MemoryError)


async def _ask(llm: Any, messages: list[dict[str, Any]], model: Optional[str]) -> tuple[Any, Optional[ActionRecord]]:
    """(the reply, None), or (None, a rejection saying why) when the reply cannot even be read as a
    message. A cached reply then fails the same way, as a rejection again, never as a crash."""
    try:
        reply = await llm.chat(messages, tools=ACTION_TOOLS, tool_choice="auto", model=model)
        if not isinstance(reply.message, dict):
            raise TypeError(f"the message is {type(reply.message).__name__}, not an object")
    except ForgegitError:
        raise
    except _READ_ERRORS as exc:
        why = f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__
        return None, _record("reply", "", False, f"the optimizer's reply could not be read ({why}): nothing in it was applied")
    return reply, None


def _text_of(message: dict[str, Any]) -> str:
    return _content_text(message.get("content"))[: MAX_RATIONALE_CHARS + 1].strip()


def _repairable(message: dict[str, Any]) -> bool:
    """Whether a repair round may send this reply back: not when it is too large or has too many calls."""
    return _unreadable(message) is None and len(_tool_call_list(message)) <= MAX_TOOL_CALLS


async def propose(
    llm: Any,
    functions: dict[str, bytes],
    last_eval: EvalResult,
    trajectories: dict[str, list[dict[str, Any]]],
    history: list[dict[str, Any]],
    *,
    max_actions: int = 3,
    context_tokens: int = 12000,
    model: Optional[str] = None,
    repair: bool = True,
    forbidden_task_ids: Iterable[str] = frozenset(),
    check_imports: Optional[ImportCheck] = None,
) -> Proposal:
    """Ask the optimizer for actions, validate them in order, and give rejected ones one chance at repair.
    check_imports imports the changed files in the sandbox (default: `sandbox.check_imports`' defaults)."""
    budget = await window_budget(llm, context_tokens, model)
    messages = build_prompt(functions, last_eval, trajectories, history, max_actions=max_actions,
                            context_tokens=budget, forbidden_task_ids=forbidden_task_ids)
    usage = Usage()
    try:
        reply, unreadable = await _ask(llm, messages, model)
    except ForgegitError as exc:
        if getattr(exc, "kind", "") == "timeout":  # a slow local optimizer: an epoch without an edit, not the end
            return Proposal([], [], f"no edit: the optimizer gave no reply in time ({exc})", usage, messages)
        # A server that does not report its window (llama-cpp-python) names it when it refuses:
        # the prompt is cut to it once more.
        smaller = await window_budget(llm, budget, model) if getattr(exc, "kind", "") == "context_length" else budget
        if smaller >= budget:
            raise
        messages = build_prompt(functions, last_eval, trajectories, history, max_actions=max_actions,
                                context_tokens=smaller, forbidden_task_ids=forbidden_task_ids)
        reply, unreadable = await _ask(llm, messages, model)
    if reply is None:
        return Proposal([], [unreadable] if unreadable else [], "the optimizer's reply could not be read", usage, messages)
    usage.add(reply.usage)
    messages.append(reply.message)
    texts = [_text_of(reply.message)]
    actions, rejected = parse_actions(reply.message, max_actions)
    accepted, bad, current, by_index = await _validate_all(actions, dict(functions), check_imports)
    rejected += bad
    left = max_actions - len(accepted)
    if repair and rejected and left > 0 and _repairable(reply.message):
        messages += _repair_messages(reply.message, max_actions, actions, by_index, rejected, left)
        try:
            second, unreadable = await _ask(llm, messages, model)
        except ForgegitError as exc:  # keep what the first answer achieved
            texts.append(f"(the repair request failed: {exc})")
        else:
            if second is None:
                rejected += [unreadable] if unreadable else []
            else:
                usage.add(second.usage)
                messages.append(second.message)
                texts.append(_text_of(second.message))
                more, more_rejected = parse_actions(second.message, left)
                more_accepted, more_bad, current, _ = await _validate_all(more, current, check_imports)
                accepted += more_accepted
                rejected += more_rejected + more_bad
    rationale = "\n\n".join(t for t in texts if t) or (_summary(accepted) if accepted else "no actions proposed")
    if len(rationale) > MAX_RATIONALE_CHARS:
        rationale = rationale[:MAX_RATIONALE_CHARS] + f"\n[… {len(rationale) - MAX_RATIONALE_CHARS:,} more characters not kept]"
    return Proposal(accepted, rejected, rationale, usage, messages)


# ---------------------------------------------------------------------------------------- applying


def _checked_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ForgegitError(f"refusing to write function {name!r}: {problem}")
    return name


def _source_bytes(code: str) -> bytes:
    return (code if code.endswith("\n") else code + "\n").encode("utf-8")


def apply_actions(files: dict[str, bytes], actions: list[Action]) -> dict[str, bytes]:
    """The file set {file name: bytes} after applying actions in order (files is not changed)."""
    out = dict(files)
    for a in actions:
        fname = _file_of(_checked_name(a.name))
        if a.kind == "remove":
            out.pop(fname, None)
        else:
            out[fname] = _source_bytes(a.code)
    return out


def _functions_dir(worktree: Path) -> Path:
    """worktree/functions, created if needed; refused when it is a symlink or resolves elsewhere."""
    root = Path(worktree).resolve()
    fdir = root / FUNCTIONS_DIR
    if fdir.is_symlink():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/ in {root} is a symlink")
    if fdir.exists() and not fdir.is_dir():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR} in {root} is not a directory")
    fdir.mkdir(exist_ok=True)
    if fdir.resolve() != root / FUNCTIONS_DIR:
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/ resolves outside {root}")
    return fdir


def _target(fdir: Path, name: str) -> Path:
    target = fdir / _file_of(_checked_name(name))
    if target.is_symlink():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} is a symlink")
    if target.exists() and not target.is_file():
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} is not a regular file")
    if target.resolve().parent != fdir:
        raise ForgegitError(f"refusing to write: {FUNCTIONS_DIR}/{target.name} resolves outside {FUNCTIONS_DIR}/")
    return target


def _write_file(target: Path, data: bytes) -> None:
    """Write data to target atomically (a temp file in the same directory, then rename), following no symlink."""
    tmp = target.with_name(f".{target.name}.forgegit-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_actions(worktree: Path, actions: list[Action]) -> list[str]:
    """Apply actions to worktree/functions/ only; the changed paths relative to worktree, in order."""
    fdir = _functions_dir(Path(worktree))
    targets = [(a, _target(fdir, a.name)) for a in actions]  # check every path before writing any
    changed: list[str] = []
    for action, target in targets:
        if action.kind == "remove":
            if not target.exists():
                continue
            target.unlink()
        elif action.kind in ("add", "revise"):
            data = _source_bytes(action.code)
            if target.exists() and target.read_bytes() == data:
                continue
            _write_file(target, data)
        else:
            raise ForgegitError(f"unknown action kind {action.kind!r}")
        rel = f"{FUNCTIONS_DIR}/{target.name}"
        if rel not in changed:
            changed.append(rel)
    return changed


def _trailer_value(text: str) -> str:
    return re.sub(r"[\s<>]+", " ", text).strip() or "unknown"


# A line git could read as a trailer (`Key: value`, `Key #value`), or as the `---` that ends a message.
_TRAILER_LIKE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9-]*[ \t]*[:#]|---|\(cherry picked from)", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u0085]")


def defuse_trailers(text: str) -> str:
    """The optimizer's rationale as a commit body: lines that look like trailers (`Forgegit-Run: x`,
    `Co-authored-by: ...`) or like the `---` that ends a message are indented, so only forgegit's own
    trailer block, which always comes last, is read as trailers; control characters are dropped."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text.replace("\t", "    "))
    lines = [f"  {line}" if _TRAILER_LIKE.match(line) else line for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in lines)).strip("\n")


def commit_message(epoch: int, actions: list[Action], rationale: str, model: str, run_id: str = "") -> str:
    """The epoch commit's message: subject, the optimizer's rationale, and forgegit + AI-authorship trailers.

    The trailers are the last paragraph and the rationale cannot add, hide or drop one (see defuse_trailers)."""
    subject = f"forgegit: epoch {epoch}: " + (", ".join(f"{a.kind} {a.name}" for a in actions) or "no changes")
    body = defuse_trailers(trim_to_tokens(defuse_trailers(rationale), 1500))
    trailers = [
        f"{EPOCH_TRAILER}: {epoch}",
        f"{ACTIONS_TRAILER}: {','.join(f'{a.kind}:{a.name}' for a in actions) or 'none'}",
        *([f"{RUN_TRAILER}: {_trailer_value(run_id)}"] if run_id else []),
        f"Co-authored-by: {_trailer_value(model)} <{TRAILER_EMAIL}>",
    ]
    return "\n\n".join(p for p in (subject, body, "\n".join(trailers)) if p.strip()) + "\n"
