"""The trained functions as OpenAI Agents SDK function tools (`pip install 'forgegit[agents]'`).

    from agents import Agent, Runner
    from forgegit.toolbox import Toolbox
    from forgegit.adapters.openai_agents import function_tools

    async with Toolbox.open(".", "v3") as tools:
        agent = Agent(name="math", instructions="...", tools=function_tools(tools))
        result = await Runner.run(agent, "What is 15% of 80?")

Each tool has the function's name, description and JSON schema and runs in the toolbox's sandbox; a
failed call returns `Error: ...` to the model (as forgegit's own agent shows it) instead of failing the
run. The schemas are not strict (a parameter with a default may be left out), so `strict_json_schema`
is off.
"""
from __future__ import annotations

from typing import Any

from ..errors import ForgegitError
from ..toolbox import Toolbox

try:
    from agents import FunctionTool
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ForgegitError("the OpenAI Agents SDK is not installed: pip install 'forgegit[agents]' "
                        "(or pip install openai-agents)") from exc


def function_tools(toolbox: Toolbox) -> list[FunctionTool]:
    """One FunctionTool per tool of the (started) toolbox."""
    out: list[FunctionTool] = []
    for schema in toolbox.schemas():
        fn = schema["function"]
        out.append(FunctionTool(
            name=fn["name"], description=fn["description"], params_json_schema=fn["parameters"],
            on_invoke_tool=_invoker(toolbox, fn["name"]), strict_json_schema=False,
        ))
    return out


def _invoker(toolbox: Toolbox, name: str) -> Any:
    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        return await toolbox.run(name, arguments)

    return invoke
