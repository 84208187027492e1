"""A stand-in model for `--scripted`: a loopback OpenAI-compatible server (forgegit.scripted) that
calls `calculate` on the arithmetic in the question, then answers with its result. No key, no network."""
from __future__ import annotations

import re
from typing import Any

from forgegit.scripted import ScriptedServer, text, tool_calls, tool_names, tool_results

ARITHMETIC = re.compile(r"[-+*/().\d\s]*\d[-+*/().\d\s]*")


def script(request: dict[str, Any]) -> Any:
    results = tool_results(request)
    if results:
        return text(f"The calculation gives {results[-1]}.\nFinal answer: {results[-1]}")
    question = next((m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), "")
    expression = max(ARITHMETIC.findall(str(question)), key=len, default="").strip()
    if expression and "calculate" in tool_names(request):
        return tool_calls(("calculate", {"expression": expression}))
    return text("I have no calculation to make.\nFinal answer: unknown")


def scripted_model() -> ScriptedServer:
    """Started; `.base_url` is its /v1 endpoint. It says so on stderr."""
    import sys

    server = ScriptedServer(script).start()
    print(f"(scripted model on {server.base_url}: it calls `calculate`, then answers)", file=sys.stderr)
    return server
