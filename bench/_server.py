"""The benchmarks' scripted model in a process of its own (so its threads do not share forgegit's GIL).

    python bench/_server.py LATENCY    -> prints the base URL, serves until stdin closes.
A request for model "bench-stats" answers {"calls", "prompt_tokens", "max_in_flight"} as its content
(not counted); its last message "reset" also resets max_in_flight. See _common.RemoteServer.
"""
from __future__ import annotations

import json
import sys

from _common import Counter, make_script
from scripted_server import ScriptedServer  # tests/, which _common puts on sys.path

from forgegit.scripted import text


def main() -> None:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    counter = Counter()
    script = make_script(counter)
    holder: dict = {}

    def serve(request: dict) -> object:
        if request.get("model") == "bench-stats":
            server = holder["server"]
            calls, tokens = counter.total()
            with counter.lock:
                by_model: dict = {}
                for (model, _tag), n in counter.calls.items():
                    by_model[model] = by_model.get(model, 0) + n
                rows = [[m, t, n, counter.tokens[(m, t)]] for (m, t), n in counter.calls.items()]
            out = {"calls": calls, "prompt_tokens": tokens, "max_in_flight": server.max_in_flight, "by_model": by_model,
                   "rows": rows}
            if request["messages"][-1]["content"] == "reset":
                server.max_in_flight = 0
            return text(json.dumps(out))
        return script(request)

    with ScriptedServer(serve, latency=latency) as server:
        holder["server"] = server
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
