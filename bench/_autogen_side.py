"""The AutoGen side of bench/autogen_compare.py: AgentOptimizer's training loop (pyautogen==0.2.35).

Runs in the bench venv's interpreter (NOT forgegit's): self-contained, no forgegit import.
The loop is the one of AutoGen's notebook `agentchat_agentoptimizer.ipynb`:

    for each epoch:
        for each task: user_proxy.initiate_chat(assistant, task) with the current functions;
                       optimizer.record_one_conversation(history, is_satisfied=correct)
        register_for_llm, register_for_exector = optimizer.step()   # roll-back lives in step()
        assistant.update_function_signature(...); user_proxy.register_function(function_map=...)
then one more evaluation pass of the last step's functions (so both systems evaluate the same
number of function sets: forgegit evaluates epoch 3's proposal before its gate rejects it).

The only substitution: AgentOptimizer's `execute_func` runs generated code with
`execute_code(..., use_docker="shaokun529/evoagent:v1")`, a Docker container per call; there is no
Docker here, so execute_code is called with use_docker=False (a local `python` subprocess per call).

Usage: _autogen_side.py BASE_URL TASKS_JSONL OUT_JSON [--epochs 3] [--max-actions 3]
Epoch boundaries are announced to the server with a request for model "bench-marker" (not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request


def marker(base_url: str, tag: str) -> None:
    body = json.dumps({"model": "bench-marker", "messages": [{"role": "user", "content": tag}]}).encode()
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


def final_answer(messages: list) -> str:
    for m in reversed(messages):
        content = m.get("content") or ""
        found = re.findall(r"Final answer:\s*(-?[\d.]+)", str(content))
        if found:
            return found[-1]
    return ""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("tasks")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-actions", type=int, default=3)
    a = p.parse_args()

    t_import = time.perf_counter()
    import autogen
    from autogen.agentchat.contrib import agent_optimizer as ao
    from autogen.code_utils import execute_code
    import_s = time.perf_counter() - t_import

    work_dir = tempfile.mkdtemp(prefix="ag-bench-exec-")

    def local_execute_code(code=None, timeout=None, filename=None, work_dir_=None, use_docker=None, lang="python", **kw):
        return execute_code(code, timeout=30, work_dir=work_dir, use_docker=False, lang=lang)

    ao.execute_code = local_execute_code  # the Docker image -> a local subprocess (see the docstring)

    tasks = [json.loads(line) for line in open(a.tasks) if line.strip()]
    common = {"base_url": a.base_url, "api_key": "sk-bench"}
    config_list = [{"model": "ag-agent", **common}, {"model": "ag-optimizer", **common}]
    # cache_seed=None: no DiskCache (AutoGen 0.2's default cache_seed=41 would cache identical requests on disk).
    agent_config = {"config_list": [config_list[0]], "cache_seed": None, "temperature": 0}
    assistant = autogen.AssistantAgent("assistant", llm_config=agent_config)
    user_proxy = autogen.UserProxyAgent(
        "user_proxy", human_input_mode="NEVER", code_execution_config=False, max_consecutive_auto_reply=8,
        is_termination_msg=lambda m: "Final answer" in str(m.get("content") or ""))
    optimizer = ao.AgentOptimizer(max_actions_per_step=a.max_actions,
                                  llm_config={"config_list": config_list, "cache_seed": None},
                                  optimizer_model="ag-optimizer")

    def evaluate() -> int:
        passed = 0
        for task in tasks:
            user_proxy.initiate_chat(assistant, message=task["question"], silent=True, clear_history=True)
            history = assistant.chat_messages_for_summary(user_proxy)
            ok = final_answer(history) == str(task["answer"])
            passed += ok
            optimizer.record_one_conversation(history, is_satisfied=ok)
        return passed

    epochs = []
    for epoch in range(1, a.epochs + 1):
        marker(a.base_url, f"ag-epoch-{epoch}")
        t0 = time.perf_counter()
        passed = evaluate()
        t_eval = time.perf_counter() - t0
        register_for_llm, register_for_exector = optimizer.step()
        for item in register_for_llm:
            assistant.update_function_signature(**item)
        if register_for_exector:
            user_proxy.register_function(function_map=register_for_exector)
        wall = time.perf_counter() - t0
        epochs.append({"epoch": epoch, "wall": wall, "eval_wall": t_eval, "passed": passed, "total": len(tasks),
                       "functions": [f["name"] for f in optimizer._trial_functions],
                       "best": [f["name"] for f in optimizer._best_functions],
                       "best_performance": optimizer._best_performance})
        print(f"ag epoch {epoch}: {passed}/{len(tasks)} passed; {wall:.2f}s; functions now "
              f"{epochs[-1]['functions']}", file=sys.stderr, flush=True)
    # The last step's functions, evaluated once (forgegit's epoch-3 gate does the same work).
    marker(a.base_url, "ag-final")
    t0 = time.perf_counter()
    passed = evaluate()
    final = {"wall": time.perf_counter() - t0, "passed": passed, "total": len(tasks)}
    marker(a.base_url, "ag-done")
    with open(a.out, "w") as f:
        json.dump({"import_s": import_s, "epochs": epochs, "final": final,
                   "autogen": getattr(autogen, "__version__", "?")}, f)
    return 0


if __name__ == "__main__":
    sys.stdout = open(os.devnull, "w")  # execute_func prints every generated script
    sys.exit(main())
