"""An agent that uses trained functions: the OpenAI SDK's tool-calling loop over a forgegit Toolbox.

    python examples/use_functions/agent.py "What is (16 - 3 - 4) * 2?" --rev v3 --model gpt-4o-mini
    python examples/use_functions/agent.py --scripted        # offline: a scripted model on 127.0.0.1

The functions are read from git at --rev (default HEAD) of --repo (default: the current repository),
offered to the model as OpenAI tools, and every call runs in forgegit's sandbox.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from openai import AsyncOpenAI

from forgegit.agent import SYSTEM_PROMPT
from forgegit.errors import ForgegitError
from forgegit.toolbox import Toolbox


async def solve(question: str, tools: Toolbox, client: AsyncOpenAI, model: str, max_turns: int = 8) -> str:
    messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    for _ in range(max_turns):
        reply = await client.chat.completions.create(model=model, messages=messages, tools=tools.schemas())
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return message.content or ""
        for call in message.tool_calls:
            result = await tools.run(call.function.name, call.function.arguments)  # sandboxed
            print(f"  {call.function.name}({call.function.arguments}) -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return "(no answer within the turn limit)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is (16 - 3 - 4) * 2?")
    parser.add_argument("--repo", default=".", help="the repository holding functions/")
    parser.add_argument("--rev", default="HEAD", help="the revision whose functions to use, e.g. a tag v3")
    parser.add_argument("--model", default=os.environ.get("FORGEGIT_MODEL", "gpt-4o-mini"))
    parser.add_argument("--scripted", action="store_true", help="use a scripted model on loopback (no key)")
    args = parser.parse_args()

    server = None
    if args.scripted:
        from _scripted import scripted_model

        server = scripted_model()
        client = AsyncOpenAI(base_url=server.base_url, api_key="scripted")
    else:
        client = AsyncOpenAI()  # OPENAI_API_KEY / OPENAI_BASE_URL; function code never sees them
    try:
        async with Toolbox.open(args.repo, args.rev) as tools:
            rev = tools.revision
            print(f"functions at {rev.describe()}: {', '.join(tools.names)}")
            print(f"sandbox: {tools.isolation.summary() if tools.isolation else 'not started'}")
            for score in rev.scores:
                print(f"recorded: {score.line()}")
            print(f"Q: {args.question}")
            print(f"A: {await solve(args.question, tools, client, args.model)}")
    finally:
        await client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ForgegitError as exc:  # unknown revision, functions failing `forgegit check`, sandbox refused
        sys.exit(f"error: {exc}")
