"""The optimizer's prompt: the action tools it is offered, its system and user messages (the current
function files, the score history, the last evaluation's tasks failures first), fitted to a token budget
and to the model's context window."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Optional

from .function_files import Action, file_name
from .records import ActionRecord, EvalResult, TaskResult
from .tokens import count_message_tokens, count_tokens, trim_to_tokens

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
    return {file_name(s.name): s.tool() for s in specs}, by_file


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


def _render_score_history(history: list[dict[str, Any]]) -> str:
    """The score history of past epochs for the prompt (the last HISTORY_LINES of them)."""
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


def content_text(content: Any) -> str:
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
        text = trim_to_tokens(content_text(m.get("content")).strip(), limit)
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
    score_history: list[dict[str, Any]],
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
    history_text = _render_score_history(score_history)

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
