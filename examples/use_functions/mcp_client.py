"""What an MCP client sees of `forgegit serve`: the official MCP client launches it over stdio,
reads the served revision and scores, lists the tools and calls one.

    python examples/use_functions/mcp_client.py                       # HEAD of the current repository
    python examples/use_functions/mcp_client.py --rev v3 calculate '{"expression": "6 * 7"}'
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", nargs="?", default="calculate")
    parser.add_argument("arguments", nargs="?", default='{"expression": "(16 - 3 - 4) * 2"}')
    parser.add_argument("--repo", default=".")
    parser.add_argument("--rev", default="HEAD")
    args = parser.parse_args()

    server = StdioServerParameters(command=sys.executable,
                                   args=["-m", "forgegit", "serve", "--repo", args.repo, "--rev", args.rev])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        print(init.instructions)
        for tool in (await session.list_tools()).tools:
            print(f"tool {tool.name}: {(tool.description or '').splitlines()[0]}")
        result = await session.call_tool(args.tool, json.loads(args.arguments))
        text = "".join(getattr(block, "text", "") for block in result.content)
        print(f"{args.tool}({args.arguments}) -> {'error: ' if result.is_error else ''}{text}")


if __name__ == "__main__":
    asyncio.run(main())
