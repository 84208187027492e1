"""Proposing: ask the optimizer LLM for add/revise/remove actions on `functions/<name>.py`
(AgentOptimizer-style), read its reply as untrusted input (parse), check every action before anything is
written (validate), and give rejected actions one round of repair."""
from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Optional

from . import safejson
from .attempts import Attempt, files_key, tried_reason
from .chat import Conversation, Message
from .errors import ForgegitError
from .function_files import Action, action_record, apply_actions, file_name, name_problem
from .functions import check_source, size_problem, total_size_problem
from .git import FUNCTIONS_DIR
from .llm import LLM, ChatResult
from .prompt import ACTION_TOOLS, REPAIR_PROMPT, EpochScore, build_prompt, content_text, window_budget
from .records import ActionRecord, EvalResult, Usage
from .sandbox import check_imports

KINDS = {"add_function": "add", "revise_function": "revise", "remove_function": "remove"}
TOOL_OF = {v: k for k, v in KINDS.items()}
# A reply is untrusted input: whatever it holds becomes rejected actions with reasons, never an exception.
MAX_ARGUMENT_BYTES = 1 << 20  # one tool call's arguments (a function file is at most 64 KiB)
MAX_ARGUMENT_DEPTH = 64  # JSON levels in one tool call's arguments
MAX_REPLY_CHARS = 4 << 20  # the text and arguments of one reply, all told; beyond it nothing is read
MAX_TOOL_CALLS = 32  # tool calls read from one reply; the rest are named in one rejection
MAX_RATIONALE_CHARS = 20000  # of the reply's text kept as the epoch's rationale (in its note and commit)


@dataclass
class Proposal:
    """What the optimizer proposed: accepted actions, rejected ones with reasons, its rationale, cost and conversation."""

    actions: list[Action]
    rejected: list[ActionRecord]
    rationale: str
    usage: Usage
    messages: list[Message]


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
        return None, action_record(tool or "?", _name_hint(raw), False,
                             f"unknown action {tool[:100]!r}: use add_function, revise_function or remove_function")
    try:
        args = _loads_forgiving(raw if raw not in (None, "") else "{}")
    except ValueError as exc:
        return None, action_record(kind, _name_hint(raw), False, f"arguments are not valid JSON: {exc}")
    if not isinstance(args, dict):
        return None, action_record(kind, "", False, f"arguments are not valid JSON: expected an object, got {type(args).__name__}")
    try:
        return _action(kind, args), None
    except ValueError as exc:
        return None, action_record(kind, str(args.get("name") or ""), False, str(exc))


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


def reply_size(message: Message) -> int:
    """Characters of a reply's text and tool-call arguments."""
    size = len(content_text(message.get("content")))
    for c in _tool_call_list(message):
        fn = _function_of(c)
        args = fn.get("arguments")
        size += len(args) if isinstance(args, str) else len(str(args)) if args is not None else 0
    return size


def _function_of(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function")
    return fn if isinstance(fn, dict) else {}


def _tool_call_list(message: Message) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _unreadable(message: Message) -> Optional[ActionRecord]:
    """Why nothing of a reply is read (it is too large), or None."""
    size = reply_size(message)
    if size > MAX_REPLY_CHARS:
        return action_record("reply", "", False, f"the reply is too large to read ({size:,} characters of text and arguments; "
                                           f"at most {MAX_REPLY_CHARS:,}): nothing in it was applied")
    return None


def parse_actions(message: Message, max_actions: int) -> tuple[list[Action], list[ActionRecord]]:
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
        calls = _content_calls(content_text(message.get("content")))
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
        rejected.append(action_record("reply", "", False, f"{len(calls) - MAX_TOOL_CALLS:,} more tool calls were not read "
                                                    f"(at most {MAX_TOOL_CALLS} per reply)"))
    return actions, rejected


# ---------------------------------------------------------------------------------------- validation


def _code_problems(name: str, code: str) -> list[str]:
    """Problems of a function file's source: functions.check_source's, then the one-public-function backstop."""
    path = f"{FUNCTIONS_DIR}/{file_name(name)}"
    try:
        tree = ast.parse(code, filename=path)
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno or 0}: syntax error: {exc.msg}"]
    except (RecursionError, MemoryError):  # e.g. an expression of 200,000 terms
        return [f"{path}:1: the code is too deeply nested to parse"]
    except ValueError as exc:  # e.g. a null byte
        return [f"{path}:1: cannot parse the code: {exc}"]
    problems = [str(p) for p in check_source(path, code, expected_name=name)]
    if problems:
        return problems
    public = [n.name for n in tree.body
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]
    if public != [name]:  # a backstop: the file name, the function name and the tool name must agree
        found = ", ".join(public) or "none"
        return [f"{path}:1: the file must define exactly one public function named {name} (found: {found})"]
    return []



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
    errors = await (check or check_imports)(files)
    return errors.get(fname) or errors.get(f"{FUNCTIONS_DIR}/{fname}")


async def validate_action(action: Action, current: dict[str, bytes], check: Optional[ImportCheck] = None) -> Optional[str]:
    """Why action cannot be applied to the file set current, or None when it can."""
    if action.kind not in TOOL_OF:
        return f"unknown action kind {action.kind!r}"
    problem = name_problem(action.name)
    if problem:
        return problem
    fname = file_name(action.name)
    if action.kind == "add" and fname in current:
        return f"function {action.name} already exists: use revise_function"
    if action.kind in ("revise", "remove") and fname not in current:
        return f"there is no function {action.name}: use add_function"
    if action.kind == "remove":
        return None
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


def _tool_outcomes(message: Message, outcomes: list[tuple[Optional[Action], Optional[ActionRecord]]]) -> list[Message]:
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


def _outcomes_per_call(message: Message, max_actions: int, actions: list[Action],
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


def _repair_messages(message: Message, max_actions: int, actions: list[Action],
                     by_index: dict[int, ActionRecord], rejected: list[ActionRecord], left: int) -> list[Message]:
    prompt = REPAIR_PROMPT.format(left=left)
    if _tool_call_list(message):
        outcomes = _outcomes_per_call(message, max_actions, actions, by_index)
        return _tool_outcomes(message, outcomes) + [{"role": "user", "content": prompt}]
    lines = "\n".join(f"- {r.kind} {r.name or '?'}: rejected: {r.reason}" for r in rejected)
    return [{"role": "user", "content": f"{lines}\n\n{prompt}"}]


# What reading a malformed reply raises (the API's own failures are ForgegitError and propagate).
_READ_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError, MemoryError)


async def _ask(llm: LLM, messages: list[Message], model: Optional[str]) -> tuple[Optional[ChatResult], Optional[ActionRecord]]:
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
        return None, action_record("reply", "", False, f"the optimizer's reply could not be read ({why}): nothing in it was applied")
    return reply, None


def _text_of(message: Message) -> str:
    return content_text(message.get("content"))[: MAX_RATIONALE_CHARS + 1].strip()


def _repairable(message: Message) -> bool:
    """Whether a repair round may send this reply back: not when it is too large or has too many calls."""
    return _unreadable(message) is None and len(_tool_call_list(message)) <= MAX_TOOL_CALLS


async def propose(
    llm: LLM,
    functions: dict[str, bytes],
    last_eval: EvalResult,
    trajectories: dict[str, Conversation],
    score_history: list[EpochScore],
    *,
    max_actions: int = 3,
    context_tokens: int = 12000,
    model: Optional[str] = None,
    repair: bool = True,
    forbidden_task_ids: Iterable[str] = frozenset(),
    check_imports: Optional[ImportCheck] = None,
    attempts: Iterable[Attempt] = (),
    tried: Optional[dict[str, Attempt]] = None,
    show_expected: bool = True,
    seed: int = 0,
    feedback: str = "",
) -> Proposal:
    """Ask the optimizer for actions, validate them in order, and give rejected ones one chance at repair.
    check_imports imports the changed files in the sandbox (default: `sandbox.check_imports`' defaults).
    attempts (epochs not kept) are shown in the prompt; tried ({attempts.files_key(files): attempt})
    refuses, before any evaluation, edits that recreate the functions of an attempt already reverted,
    and sends them back for repair with what happened to them last time."""
    tried = tried or {}
    budget = await window_budget(llm, context_tokens, model)
    prompt_options: dict[str, Any] = {"forbidden_task_ids": forbidden_task_ids, "attempts": list(attempts),
                                      "show_expected": show_expected, "seed": seed,
                                      "feedback": feedback}
    messages = build_prompt(functions, last_eval, trajectories, score_history, max_actions=max_actions,
                            context_tokens=budget, **prompt_options)
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
        messages = build_prompt(functions, last_eval, trajectories, score_history, max_actions=max_actions,
                                context_tokens=smaller, **prompt_options)
        reply, unreadable = await _ask(llm, messages, model)
    if reply is None:
        return Proposal([], [unreadable] if unreadable else [], "the optimizer's reply could not be read", usage, messages)
    usage.add(reply.usage)
    messages.append(reply.message)
    texts = [_text_of(reply.message)]
    actions, rejected = parse_actions(reply.message, max_actions)
    accepted, bad, current, by_index = await _validate_all(actions, dict(functions), check_imports)
    rejected += bad
    again = tried.get(files_key(current)) if accepted else None
    if again is not None:  # the same functions as an attempt already reverted: refused before evaluation
        refusal = tried_reason(again)
        for i in range(len(actions)):
            by_index.setdefault(i, actions[i].record(False, refusal))
        rejected += [a.record(False, refusal) for a in accepted]
        accepted, current = [], dict(functions)
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
                more_accepted, more_bad, after, _ = await _validate_all(more, current, check_imports)
                again = tried.get(files_key(after)) if more_accepted else None
                if again is not None:  # the repair recreates a reverted attempt too: nothing of it applies
                    more_bad += [a.record(False, tried_reason(again)) for a in more_accepted]
                    more_accepted = []
                accepted += more_accepted
                rejected += more_rejected + more_bad
    rationale = "\n\n".join(t for t in texts if t) or (_summary(accepted) if accepted else "no actions proposed")
    if len(rationale) > MAX_RATIONALE_CHARS:
        rationale = rationale[:MAX_RATIONALE_CHARS] + f"\n[… {len(rationale) - MAX_RATIONALE_CHARS:,} more characters not kept]"
    return Proposal(accepted, rejected, rationale, usage, messages)
