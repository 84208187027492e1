"""The optimizer's prompt: the action tools it is offered, its system and user messages (the current
function files, the score history, the attempts not kept, the last evaluation's tasks: a summary of the
failures, a few diverse ones in full, then the rest), fitted to a token budget and to the model's
context window."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from . import attempts as attempts_mod, selection
from .attempts import Attempt
from .chat import Conversation, Message, ToolSchema
from .function_files import file_name
from .functions import load_specs
from .llm import LLM
from .records import EvalResult, TaskResult
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
FULL_CONVERSATIONS = 3  # failed tasks shown with their whole conversation first (GEPA reflects on about three)
MAX_FULL_CONVERSATIONS = 6  # or one per failure kind present, up to this many
FULL_SHARE = 0.5  # of the tasks' room those may take
FULL_TOKENS = 1500  # one full conversation, at most
ATTEMPTS_SHARE = 5  # the attempts not kept take at most 1/ATTEMPTS_SHARE of the prompt's room



@dataclass
class EpochScore:
    """One line of the prompt's score history: an epoch's score, whether it was kept (None: the baseline),
    and its accepted actions ("add digit_sum")."""

    epoch: int
    score: float
    kept: Optional[bool]
    actions: list[str]
    status: str = ""  # the honest label of an epoch not kept (attempts.Attempt.label); empty: from kept


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


ACTION_TOOLS: list[ToolSchema] = [
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

## Score history
{history}

## Attempts that were not kept (newest first): do not repeat them unchanged; learn from what they broke and fixed
{attempts}

## The last evaluation: {passed}/{total} tasks passed
Failed tasks come first, each with the checker's feedback, then passed ones. Long outputs are cut.

{trajectories}

## Your turn
Study why the failed tasks failed, then take at most {max_actions} actions (add_function, revise_function, remove_function) that will make the agent solve more tasks of this kind. First explain in a few sentences what went wrong and what you change; then call the tools. Try your best to improve the functions: take no action only if you are sure the current ones are the best you can make.
"""

FEEDBACK_PROMPT = """## Reviewer feedback (highest priority)
{feedback}

"""
FEEDBACK_SHARE = 4  # review feedback takes at most 1/FEEDBACK_SHARE of the prompt's tokens

REPAIR_PROMPT = """Some actions were rejected and nothing of them was applied; the accepted ones are applied. Send corrected actions for the rejected ones (at most {left}), following the rules of a function file, or take no action to leave them out."""


def _specs(functions: dict[str, bytes]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """({file name: OpenAI tool schema}, {file name: problems}) of the current files."""
    specs, problems = load_specs(functions)
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


def _render_score_history(history: list[EpochScore]) -> str:
    """The score history of past epochs for the prompt (the last HISTORY_LINES of them)."""
    if not history:
        return "(no epochs yet)"
    lines = []
    for h in history[-HISTORY_LINES:]:
        status = h.status or ("baseline" if h.kept is None else ("kept" if h.kept else "reverted"))
        lines.append(f"- epoch {h.epoch}: score {h.score:.3f}, {status}; actions: {', '.join(h.actions) or 'none'}")
    if len(history) > HISTORY_LINES:
        lines.insert(0, f"- ({len(history) - HISTORY_LINES} earlier epochs not shown)")
    return "\n".join(lines)


def content_text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _render_conversation(messages: list[Message]) -> str:
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


HIDDEN = "[expected answer hidden]"


def _hide(text: str, expected: str) -> str:
    """text without the expected answer (as a whole word), for show_expected = false."""
    expected = str(expected).strip()
    if not expected:
        return text
    return re.sub(rf"(?<![\w.]){re.escape(expected)}(?![\w.])", HIDDEN, text)


def _header(r: TaskResult, show_expected: bool = True) -> str:
    if r.passed:
        answer = str(r.answer) if show_expected else _hide(str(r.answer), r.expected)
        return f"### Task {r.task_id}: PASSED\nanswer: {trim_to_tokens(answer, 80)}"
    feedback = str(r.feedback).strip()
    expected = f"expected: {trim_to_tokens(str(r.expected), 80)}\n"
    if not show_expected:
        feedback, expected = _hide(feedback, r.expected), ""
    feedback = trim_to_tokens(feedback, FEEDBACK_TOKENS) or "(none)"
    return (f"### Task {r.task_id}: FAILED ({r.failure or 'wrong_answer'})\n"
            f"{expected}answer: {trim_to_tokens(str(r.answer), 80)}\n"
            f"checker feedback: {feedback}")


def _ordered_results(last_eval: EvalResult, forbidden: frozenset[str]) -> list[TaskResult]:
    """The evaluation's tasks, failures first, without any forbidden (sealed) task."""
    results = [r for r in last_eval.results if str(r.task_id) not in forbidden]
    return [r for r in results if not r.passed] + [r for r in results if r.passed]


def _fit_trajectories(results: list[TaskResult], bodies: dict[str, str], budget: int,
                      conversations: Optional[dict[str, Conversation]] = None, *, seed: int = 0,
                      show_expected: bool = True) -> str:
    """Task blocks within budget tokens, built for learning rather than listing: a summary of every
    failure (when not all are shown in full), FULL_CONVERSATIONS failed tasks with their whole
    conversation, chosen for diversity (selection.diverse_order, seeded), then the other failures'
    headers (with feedback), their conversations by fair share, and passed tasks last."""
    conversations = conversations or {}
    failed = selection.diverse_order([r for r in results if not r.passed], conversations, seed)
    passed = [r for r in results if r.passed]
    used = 0
    blocks: list[str] = []
    full: dict[str, str] = {}
    kinds = len({r.failure for r in failed})
    candidates = [r for r in failed if str(r.task_id) in bodies][:max(FULL_CONVERSATIONS, min(kinds, MAX_FULL_CONVERSATIONS))]
    if len(candidates) < len(failed):
        text = (f"All {len(failed)} failed tasks, counted:\n{selection.summary(failed, conversations)}\n"
                f"The first {len(candidates)} below are shown with their whole conversation, chosen to differ "
                f"in failure kind, feedback and functions used.")
        if count_tokens(text) + 2 <= budget // 4:
            blocks.append(text)
            used += count_tokens(text) + 2
    full_room = int((budget - used) * FULL_SHARE)
    spent = 0
    for i, r in enumerate(candidates):
        tid = str(r.task_id)
        header = _header(r, show_expected)
        share = min(FULL_TOKENS, (full_room - spent) // (len(candidates) - i)) - count_tokens(header) - 8
        if share < MIN_BODY_TOKENS:
            break
        block = f"{header}\nconversation:\n{trim_to_tokens(bodies[tid], share)}"
        spent += count_tokens(block) + 2
        full[tid] = block
    used += spent
    blocks += list(full.values())
    headers: dict[str, str] = {}
    omitted_failed: list[str] = []
    for r in failed:
        tid = str(r.task_id)
        if tid in full:
            continue
        h = _header(r, show_expected)
        cost = count_tokens(h) + 2
        if used + cost > budget:
            omitted_failed.append(tid)
            continue
        headers[tid] = h
        used += cost
    shown = [r for r in failed if str(r.task_id) in headers] + passed
    omitted_passed: list[str] = []
    for i, r in enumerate(shown):
        tid = str(r.task_id)
        header = headers.get(tid) or _header(r, show_expected)
        if r.passed:
            cost = count_tokens(header) + 2
            if used + cost > budget:
                omitted_passed.append(tid)
                continue
            used += cost
        body = bodies.get(tid, "(no conversation recorded)")
        left = budget - used
        share = left // max(1, len(shown) - i) - 4
        if share < MIN_BODY_TOKENS:
            share = min(left - 4, MIN_BODY_TOKENS) if not r.passed else 0
        body = trim_to_tokens(body, share) if share > 0 else ""
        block = header + ("\nconversation:\n" + body if body else "")
        used += count_tokens(block) - count_tokens(header) + (2 if body else 0)
        blocks.append(block)
    if omitted_failed:
        blocks.append(f"({len(omitted_failed)} more failed tasks left out for space: {', '.join(omitted_failed[:20])}"
                      f"{' …' if len(omitted_failed) > 20 else ''})")
    if omitted_passed:
        blocks.append(f"({len(omitted_passed)} more passed tasks left out for space)")
    return "\n\n".join(blocks) if blocks else "(no tasks recorded)"


PROMPT_MARGIN = 1.2  # forgegit counts cl100k-like tokens; a local model's tokenizer may count a fifth more
SCHEMA_MARGIN = 1.5  # chat templates spell tool schemas out at more length than their JSON
TEMPLATE_TOKENS = 128  # role markers and the template's own words


def fit_to_window(context_tokens: int, window: Optional[int], reply_tokens: int,
                  tools: Optional[list[ToolSchema]] = None) -> int:
    """The optimizer prompt's budget: context_tokens, or less where the model's context window must
    also hold the tool schemas, the reply (up to a quarter of the window) and a margin for a tokenizer
    that counts more than forgegit's estimate."""
    if not window:
        return context_tokens
    schemas = int(count_tokens(json.dumps(tools, ensure_ascii=False)) * SCHEMA_MARGIN) if tools else 0
    reply = min(reply_tokens, window // 4) if reply_tokens > 0 else window // 4
    room = int((window - schemas - reply - TEMPLATE_TOKENS) / PROMPT_MARGIN)
    return max(256, min(context_tokens, room))


async def window_budget(llm: LLM, context_tokens: int, model: Optional[str]) -> int:
    """fit_to_window for this client's model: its `context_window` setting or what its server reports."""
    limit = getattr(llm, "context_limit", None)
    if limit is None:
        return context_tokens
    window = await limit(model)
    return fit_to_window(context_tokens, window, int(getattr(llm, "max_tokens", 0) or 0), ACTION_TOOLS)


def build_prompt(
    functions: dict[str, bytes],
    last_eval: EvalResult,
    trajectories: dict[str, Conversation],
    score_history: list[EpochScore],
    *,
    max_actions: int,
    context_tokens: int,
    forbidden_task_ids: Iterable[str] = frozenset(),
    attempts: Iterable[Attempt] = (),
    show_expected: bool = True,
    seed: int = 0,
    feedback: str = "",
) -> list[Message]:
    """The optimizer's system and user messages, trimmed to context_tokens; forbidden tasks never appear.
    `feedback` (the reviewers' words, reviews.prompt_section) opens the user message, in a section of its own.

    attempts (epochs not kept) are shown newest first with their diffs, within 1/ATTEMPTS_SHARE of the
    room; show_expected=False hides the expected answers (also inside the checker's feedback); seed
    makes the choice of the failed tasks shown in full reproducible.

    The function sources count inside the budget: they are shown whole while they fit in half of the
    room the prompt leaves, else cut (see _render_functions). The evaluation's tasks get the rest
    (passed ones trimmed first, then conversations, never a failure's feedback while it fits).
    """
    forbidden = frozenset(str(t) for t in forbidden_task_ids)
    results = _ordered_results(last_eval, forbidden)
    shown = {str(r.task_id) for r in results}
    bodies = {str(k): _render_conversation(v) for k, v in trajectories.items() if str(k) in shown}
    if not show_expected:  # a passed task's conversation ends with its answer
        expected = {str(r.task_id): r.expected for r in results}
        bodies = {k: _hide(v, expected[k]) for k, v in bodies.items()}
    passed, total = sum(1 for r in results if r.passed), len(results)
    system = SYSTEM_PROMPT.format(max_actions=max_actions)
    history_text = _render_score_history(score_history)
    tried = list(attempts)
    feedback_text = (FEEDBACK_PROMPT.format(feedback=trim_to_tokens(feedback, context_tokens // FEEDBACK_SHARE))
                     if feedback.strip() else "")
    conversations = {str(k): v for k, v in trajectories.items() if str(k) in shown}

    def messages(traj_text: str, functions_text: str, attempts_text: str = "(none yet)") -> list[Message]:
        user = feedback_text + USER_PROMPT.format(
            count=len(functions), functions=functions_text, history=history_text, attempts=attempts_text,
            passed=passed, total=total, trajectories=traj_text, max_actions=max_actions)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    room = context_tokens - count_message_tokens(messages("", "")) - max(16, context_tokens // 50)
    functions_text = _render_functions(functions, max(0, room // FUNCTIONS_SHARE))
    attempts_text = attempts_mod.render(tried, max(0, room // ATTEMPTS_SHARE))
    fixed = count_message_tokens(messages("", functions_text, attempts_text))
    budget = context_tokens - fixed - max(16, context_tokens // 50)  # slack for the approximation at joins

    def fit(budget: int) -> str:
        return _fit_trajectories(results, bodies, budget, conversations, seed=seed, show_expected=show_expected)

    text = fit(budget)
    while count_message_tokens(messages(text, functions_text, attempts_text)) > context_tokens and budget > 0:
        budget -= max(16, budget // 10)
        text = fit(budget)
    return messages(text, functions_text, attempts_text)
