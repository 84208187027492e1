"""The same agent on the OpenAI Agents SDK: the trained functions as its function tools.

    pip install 'forgegit[agents]'
    python examples/use_functions/agents_sdk.py "What is (16 - 3 - 4) * 2?" --rev v3
    python examples/use_functions/agents_sdk.py --scripted   # offline: a scripted model on 127.0.0.1
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from forgegit.adapters.openai_agents import function_tools
from forgegit.agent import SYSTEM_PROMPT
from forgegit.errors import ForgegitError
from forgegit.toolbox import Toolbox


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is (16 - 3 - 4) * 2?")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--model", default=os.environ.get("FORGEGIT_MODEL", "gpt-4o-mini"))
    parser.add_argument("--scripted", action="store_true", help="use a scripted model on loopback (no key)")
    args = parser.parse_args()

    server = None
    if args.scripted:
        from _scripted import scripted_model

        server = scripted_model()
        set_tracing_disabled(True)  # offline: send no trace to OpenAI
        client = AsyncOpenAI(base_url=server.base_url, api_key="scripted")
    else:
        client = AsyncOpenAI()
    try:
        async with Toolbox.open(args.repo, args.rev) as tools:
            print(f"functions at {tools.revision.describe()}: {', '.join(tools.names)}")
            agent = Agent(name="forgegit agent", instructions=SYSTEM_PROMPT, tools=function_tools(tools),
                          model=OpenAIChatCompletionsModel(model=args.model, openai_client=client))
            result = await Runner.run(agent, args.question)
            print(f"Q: {args.question}")
            print(f"A: {result.final_output}")
    finally:
        await client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ForgegitError as exc:
        sys.exit(f"error: {exc}")
