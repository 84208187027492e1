"""`forgegit eval` and the evaluation library: concurrency, notes reuse, agents, and every bad-input path."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git, make_repo
from scripted_server import RawResponse

from forgegit import demo
from forgegit.cli import cli, main
from forgegit.scripted import HTTPError, text, tool_calls


def eval_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["eval", *args])


@pytest.fixture
def demo_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = demo.make_repo(tmp_path / "repo")
    (repo / "functions" / "digit_sum.py").write_text(demo.DIGIT_SUM)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "add digit_sum")
    monkeypatch.chdir(repo)
    return repo


def test_eval_json_reports_score_tokens_revision_and_per_task_results(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    llm_env(scripted(demo.make_script()))
    result = eval_cli("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["score"] == 1.0 and data["passed"] == data["total"] == 12
    assert data["tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"] > 0
    assert data["revision"] == git(demo_repo, "rev-parse", "HEAD")
    first = data["results"][0]
    assert first["passed"] and first["tool_calls"] == 1 and first["expected"] == "39"


def test_second_eval_of_the_same_tree_makes_no_model_call(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    server = scripted(demo.make_script())
    llm_env(server)
    assert eval_cli().exit_code == 0
    calls = server.calls
    git(demo_repo, "commit", "-q", "--allow-empty", "-m", "unrelated change")  # same functions/ tree
    again = eval_cli()
    assert again.exit_code == 0 and "no model call" in again.output
    assert server.calls == calls
    fresh = eval_cli("--no-cache")
    assert fresh.exit_code == 0 and server.calls == 2 * calls  # --no-cache: nothing reused


def test_eval_reads_the_revision_from_git_not_the_working_tree(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    llm_env(scripted(demo.make_script()))
    (demo_repo / "functions" / "digit_sum.py").write_text("garbage that does not parse (")
    result = eval_cli("--json", "HEAD~1")  # the commit before digit_sum existed
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["score"] < 0.5
    assert (demo_repo / "functions" / "digit_sum.py").read_text() == "garbage that does not parse ("


def test_tasks_run_concurrently_up_to_the_limit(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    server = scripted(demo.make_script(), latency=0.2)
    llm_env(server)
    assert eval_cli("--concurrency", "4", "--no-cache").exit_code == 0
    assert 2 <= server.max_in_flight <= 4


def test_by_field_breaks_the_score_down(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    llm_env(scripted(demo.make_script()))
    lines = [json.dumps({"question": t["question"], "answer": t["answer"], "kind": "long" if len(t["answer"]) > 1 else "short"})
             for t in demo.TASKS]
    (demo_repo / "by.jsonl").write_text("\n".join(lines) + "\n")
    result = eval_cli("--tasks", "by.jsonl", "--by", "kind")
    assert result.exit_code == 0 and "by kind:" in result.output and "long" in result.output


def test_shards_merge_into_one_recorded_result(demo_repo: Path, scripted: Any, llm_env: Any, tmp_path: Path) -> None:
    server = scripted(demo.make_script())
    llm_env(server)
    outs = [str(tmp_path / f"s{k}.json") for k in (1, 2, 3)]
    for k, out in enumerate(outs, 1):
        assert eval_cli("--shard", f"{k}/3", "--out", out).exit_code == 0
    merged = eval_cli("--json", *[x for o in outs for x in ("--merge", o)])
    assert merged.exit_code == 0, merged.output
    assert json.loads(merged.output)["total"] == 12
    calls = server.calls
    assert "no model call" in eval_cli().output and server.calls == calls  # the merged result is recorded


def test_tool_errors_and_timeouts_are_returned_to_the_agent(tmp_path: Path, scripted: Any, llm_env: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r", {
        "functions/boom.py": '"""x"""\n\n\ndef boom(n: int) -> int:\n    """Fail.\n\n    Args:\n        n: n.\n    """\n    return 1 // 0\n',
        "functions/hang.py": '"""x"""\n\n\ndef hang(n: int) -> int:\n    """Hang.\n\n    Args:\n        n: n.\n    """\n    while True:\n        pass\n',
        "t.jsonl": '{"question": "boom", "answer": "1"}\n{"question": "hang", "answer": "1"}\n',
        "forgegit.toml": 'tasks = "t.jsonl"\ntool_timeout = 1.0\nmodel = "m"\n',
    })
    seen: list[str] = []

    def script(r: dict[str, Any]) -> Any:
        tool_msgs = [m["content"] for m in r["messages"] if m["role"] == "tool"]
        if tool_msgs:
            seen.append(tool_msgs[-1])
            return text("Final answer: 1")
        q = r["messages"][1]["content"]
        return tool_calls((q, {"n": 1}))

    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    result = eval_cli("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] == 2 and all(r["tool_errors"] == 1 for r in data["results"])
    assert any("ZeroDivisionError" in s for s in seen)
    assert any("time" in s.lower() for s in seen)


def test_turn_limit_is_a_failure_kind(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    llm_env(scripted(lambda r: tool_calls(("digit_sum", {"n": 1}))))  # never answers
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text() + "max_turns = 2\n")
    data = json.loads(eval_cli("--json").output)
    assert data["passed"] == 0 and all(r["failure"] == "turn_limit" for r in data["results"])


def test_python_tool_runs_code_with_the_functions_importable(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    def script(r: dict[str, Any]) -> Any:
        tools = [m["content"] for m in r["messages"] if m["role"] == "tool"]
        if tools:
            return text(f"Final answer: {tools[-1].strip()}")
        n = r["messages"][1]["content"].split("digits of ")[1].rstrip("?")
        return tool_calls(("python", {"code": f"from digit_sum import digit_sum\nprint(digit_sum({n}))"}))

    llm_env(scripted(script))
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text().replace("python_tool = false", "python_tool = true"))
    data = json.loads(eval_cli("--json").output)
    assert data["score"] == 1.0


def test_a_custom_agent_module_function_is_used(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    (demo_repo / "my_agent.py").write_text(textwrap.dedent('''
        async def solve(task, ctx):
            n = int(task.question.split("digits of ")[1].rstrip("?"))
            out = await ctx.call_tool("digit_sum", {"n": n})
            return {"answer": out, "messages": [{"role": "tool", "content": out}]}
    '''))
    server = scripted(demo.make_script())
    llm_env(server)
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text() + 'agent = "my_agent:solve"\n')
    result = eval_cli("--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["score"] == 1.0 and server.calls == 0  # the custom agent made no model call
    sys.modules.pop("my_agent", None)


# ---------------------------------------------------------------- bad input: one line, non-zero exit


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    return int(exit_info.value.code or 0), err


@pytest.mark.parametrize("reply,needle", [
    (HTTPError(401, {"error": {"message": "bad key"}}), "rejected the API key (401): set OPENAI_API_KEY"),
    (HTTPError(404, {"error": {"message": "no model"}}), "not found"),
    (RawResponse("<html>proxy error</html>"), "not valid JSON"),
])
def test_endpoint_failures_are_one_line_errors(demo_repo: Path, scripted: Any, llm_env: Any, reply: Any, needle: str,
                                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    llm_env(scripted(lambda r: reply))
    monkeypatch.setattr("forgegit.llm.random.random", lambda: 0.0)
    monkeypatch.setattr("forgegit.llm.asyncio.sleep", _no_sleep)
    code, err = run_main(["eval"], capsys)
    assert code == 1 and needle in err and "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if not line.startswith("forgegit: retrying in ")]  # one line per retry
    assert len(errors) == 1 and errors[0].startswith("forgegit: error: ")


async def _no_sleep(_: float) -> None:
    return None


def test_missing_task_file_and_malformed_function_are_one_line_errors(demo_repo: Path, capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    code, err = run_main(["eval", "--tasks", "missing.jsonl"], capsys)
    assert code == 1 and "missing.jsonl: task file not found" in err
    (demo_repo / "functions" / "bad.py").write_text("def bad(:\n")
    git(demo_repo, "add", "-A")
    git(demo_repo, "commit", "-q", "-m", "bad")
    code, err = run_main(["eval"], capsys)
    assert code == 1 and "functions/bad.py:1" in err and "Traceback" not in err


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(cli, ["init"])
    assert first.exit_code == 0
    assert (tmp_path / "functions" / ".gitkeep").exists() and (tmp_path / "tasks" / "train.jsonl").exists()
    assert "# Model the agent uses" in (tmp_path / "forgegit.toml").read_text()
    second = CliRunner().invoke(cli, ["init"])
    assert second.exit_code != 0 and "refusing to overwrite" in str(second.exception)


def test_function_problems_become_annotations_in_github_actions(demo_repo: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (demo_repo / "functions" / "bad.py").write_text("def bad(:\n")
    git(demo_repo, "add", "-A")
    git(demo_repo, "commit", "-q", "-m", "bad")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(SystemExit):
        main(["train", "--run-id", "x"])
    out = capsys.readouterr()
    assert "::error file=functions/bad.py,line=1::" in out.out
    assert "do not pass `forgegit check`" in out.err


def test_a_request_that_times_out_fails_its_task_and_the_eval_goes_on(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    import time
    inner = demo.make_script()
    slow = demo.TASKS[0]["question"]

    def script(r: dict[str, Any]) -> Any:
        if any(m.get("content") == slow for m in r["messages"]):
            time.sleep(1.5)  # e.g. a small local model looping until max_tokens
        return inner(r)

    llm_env(scripted(script))
    result = eval_cli("--json", "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    failed = [r for r in data["results"] if not r["passed"]]
    assert len(failed) == 1 and failed[0]["failure"] == "timeout" and "--timeout" in failed[0]["feedback"]
    assert data["passed"] == data["total"] - 1


def test_a_larger_timeout_runs_again_only_the_tasks_a_smaller_one_failed(demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    """Raising --timeout, as the timeout message says, reruns the timed-out task, not the whole evaluation."""
    import time
    inner = demo.make_script()
    slow = demo.TASKS[0]["question"]

    def script(r: dict[str, Any]) -> Any:
        if any(m.get("content") == slow for m in r["messages"]):
            time.sleep(1.0)
        return inner(r)

    server = scripted(script)
    llm_env(server)
    assert eval_cli("--timeout", "0.3").exit_code == 0
    calls = server.calls
    same = eval_cli("--timeout", "0.3")  # the same timeout: the recorded result stands
    assert same.exit_code == 0 and "no model call" in same.output and server.calls == calls
    larger = eval_cli("--json", "--timeout", "30")
    assert larger.exit_code == 0, larger.output
    data = json.loads(larger.output)
    assert data["passed"] == data["total"] == 12
    assert server.calls - calls == 2  # the slow task's two requests; the eleven others were reused
    assert "no model call" in eval_cli("--timeout", "60").output  # nothing timed out any more


def test_a_result_recorded_with_other_max_tokens_or_tool_choice_is_not_reused(
        demo_repo: Path, scripted: Any, llm_env: Any) -> None:
    """A reply cut at another max_tokens, or tools a server ignored without tool_choice, is another result;
    a different --timeout is not (it changes no reply)."""
    server = scripted(demo.make_script())
    llm_env(server)
    assert eval_cli().exit_code == 0
    calls = server.calls
    timeout = eval_cli("--timeout", "77")
    assert timeout.exit_code == 0 and "no model call" in timeout.output and server.calls == calls
    config = demo_repo / "forgegit.toml"
    base = config.read_text()
    for setting in ('max_tokens = 512', 'tool_choice = "required"', 'tool_choice = ""'):
        config.write_text(base + setting + "\n")
        again = eval_cli()
        assert again.exit_code == 0, again.output
        assert "no model call" not in again.output and server.calls > calls, setting
        calls = server.calls
