"""The agent's toolbox and loop: what the model sees when it calls tools right, wrong, or not at all."""
from __future__ import annotations

import asyncio
from typing import Any

from forgegit.agent import AgentContext, Toolbox, builtin_agent, load_agent, run_agent
from forgegit.config import Settings
from forgegit.functions import load_specs
from forgegit.llm import LLM, Endpoint
from forgegit.sandbox import Sandbox
from forgegit.scripted import text, tool_calls
from forgegit.tasks import Task

GREET = b'''"""Greeting."""
from typing import Optional


def greet(name: str, title: Optional[str]) -> str:
    """Greet someone.

    Args:
        name: Who.
        title: An optional title.
    """
    return f"hello {title + ' ' if title else ''}{name}"
'''
FILES = {"greet.py": GREET}


def with_toolbox(fn: Any, python_tool: bool = True) -> Any:
    async def go() -> Any:
        specs, problems = load_specs(FILES)
        assert not problems
        async with Sandbox(FILES) as sandbox:
            return await fn(Toolbox(specs, sandbox, python_tool=python_tool))
    return asyncio.run(go())


def test_an_omitted_optional_parameter_is_passed_as_none() -> None:
    out = with_toolbox(lambda tb: tb.call("greet", '{"name": "ada"}'))
    assert out == ("hello ada", True)


def test_bad_tool_calls_become_error_text_for_the_model() -> None:
    assert with_toolbox(lambda tb: tb.call("nope", {}))[0].startswith("Error: there is no function 'nope'")
    assert "not valid JSON" in with_toolbox(lambda tb: tb.call("greet", "{oops"))[0]
    missing = with_toolbox(lambda tb: tb.call("greet", {}))
    assert missing[1] is False and "name" in missing[0]


def test_tool_schemas_include_python_unless_disabled() -> None:
    names = with_toolbox(lambda tb: asyncio.sleep(0, [t["function"]["name"] for t in tb.schemas()]))
    assert names == ["greet", "python"]
    names = with_toolbox(lambda tb: asyncio.sleep(0, [t["function"]["name"] for t in tb.schemas()]), python_tool=False)
    assert names == ["greet"]


def test_builtin_agent_loops_through_tool_calls_to_a_final_answer(scripted: Any) -> None:
    def script(r: dict[str, Any]) -> Any:
        tools = [m for m in r["messages"] if m["role"] == "tool"]
        return text(f"Final answer: {tools[-1]['content']}") if tools else tool_calls(("greet", {"name": "bo", "title": "dr"}))

    server = scripted(script)

    async def go(tb: Toolbox) -> Any:
        llm = LLM("m", endpoint=Endpoint(server.base_url, "k"))
        try:
            return await run_agent(builtin_agent, Task("t", "greet bo", "x", 1), AgentContext(tb.schemas(), tb, llm, Settings()))
        finally:
            await llm.aclose()

    t = with_toolbox(go)
    assert t.stop == "answer" and t.answer == "Final answer: hello dr bo"
    assert t.tool_calls == 1 and t.turns == 2 and t.usage.calls == 2
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "tool", "assistant"]


def test_a_crashing_custom_agent_is_an_agent_error_not_a_crash() -> None:
    def broken(task: Task, ctx: AgentContext) -> str:
        raise RuntimeError("my agent is broken")

    async def go(tb: Toolbox) -> Any:
        return await run_agent(broken, Task("t", "q", "a", 1), AgentContext([], tb, None, Settings()))  # type: ignore[arg-type]

    t = with_toolbox(go)
    assert t.stop == "agent_error" and "RuntimeError: my agent is broken" in t.error


def test_unknown_agent_reference_is_a_clear_error() -> None:
    import pytest
    from forgegit.errors import ForgegitError
    with pytest.raises(ForgegitError, match="cannot import no_such_module"):
        load_agent("no_such_module:solve")
    with pytest.raises(ForgegitError, match="expected 'builtin' or 'module:function'"):
        load_agent("just-a-name")


def test_a_conversation_that_outgrows_the_context_fails_its_task_but_a_first_request_that_does_not_fit_ends_the_run(
        scripted: Any) -> None:
    from forgegit.llm import LLMError
    from forgegit.scripted import HTTPError
    too_long = HTTPError(400, {"error": {"message": "This model's maximum context length is 8192 tokens"}})
    grows = scripted(lambda r: too_long if any(m["role"] == "tool" for m in r["messages"])
                     else tool_calls(("greet", {"name": "bo"})))
    never = scripted(lambda r: too_long)

    async def go(server: Any, tb: Toolbox) -> Any:
        llm = LLM("m", endpoint=Endpoint(server.base_url, "k"))
        try:
            return await run_agent(builtin_agent, Task("t", "greet bo", "x", 1), AgentContext(tb.schemas(), tb, llm, Settings()))
        finally:
            await llm.aclose()

    t = with_toolbox(lambda tb: go(grows, tb))
    assert t.stop == "llm_error" and "max_turns" in t.error and t.turns == 1
    try:
        with_toolbox(lambda tb: go(never, tb))
    except LLMError as exc:
        assert exc.kind == "context_length" and "max_turns" in str(exc)
    else:
        raise AssertionError("a first request over the context window must end the run")
