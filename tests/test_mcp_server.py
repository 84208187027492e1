"""`forgegit serve` as an MCP client sees it: the official `mcp` SDK's client launches the real command
over stdio (and over streamable HTTP on loopback); the functions come from real git repositories."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Optional, TypeVar

import pytest
from click.testing import CliRunner
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from as_user import shared_dir
from conftest import git, make_repo

from forgegit.cli import cli
from forgegit.commands.serve import parse_http
from forgegit.errors import ForgegitError
from forgegit.functions import load_specs
from forgegit.scripted import text

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
SECRET = "sk-live-do-not-leak-0123456789"

ADD = '''"""Addition."""


def add(a: int, b: int = 1) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b
'''

FAIL = '''"""Always fails."""


def fail(reason: str) -> str:
    """Raise an error carrying reason.

    Args:
        reason: What to complain about.
    """
    raise ValueError(f"refused: {reason}")
'''

PEEK = '''"""Looks for secrets."""
import os


def peek(name: str) -> str:
    """Return an environment variable, or <unset>.

    Args:
        name: The variable's name.
    """
    return os.environ.get(name, "<unset>")
'''

READ = '''"""Reads a file."""


def read(path: str) -> str:
    """Return a file's text.

    Args:
        path: Absolute path of the file.
    """
    with open(path) as f:
        return f.read()
'''

FUNCTIONS = {"functions/add.py": ADD, "functions/fail.py": FAIL, "functions/peek.py": PEEK, "functions/read.py": READ}


def run(coro: Awaitable[T], timeout: float = 120) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def serve_argv(repo: Path, *args: str) -> list[str]:
    return ["-m", "forgegit", "serve", "--repo", str(repo), *args]


@contextlib.asynccontextmanager
async def session(repo: Path, *args: str, stderr: Optional[Path] = None, env: Optional[dict[str, str]] = None,
                  command: Optional[list[str]] = None) -> AsyncIterator[ClientSession]:
    """The official MCP client, connected over stdio to a real `forgegit serve` subprocess."""
    argv = (command or []) + [sys.executable, *serve_argv(repo, *args)]
    params = StdioServerParameters(command=argv[0], args=argv[1:], env={"OPENAI_API_KEY": SECRET, **(env or {})})
    with open(stderr or os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def serve_fails(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *serve_argv(repo, *args)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FUNCTIONS)


# ------------------------------------------------------------------ list, call, errors


def test_an_mcp_client_lists_every_function_with_its_description_and_schema(repo: Path) -> None:
    async def go() -> Any:
        async with session(repo) as s:
            return (await s.list_tools()).tools

    tools = run(go())
    specs, _ = load_specs({p.split("/")[1]: s.encode() for p, s in FUNCTIONS.items()})
    assert [t.name for t in tools] == ["add", "fail", "peek", "read"]
    for tool, spec in zip(tools, specs):
        assert tool.description == spec.description
        assert tool.input_schema == spec.parameters
    add = tools[0]
    assert add.input_schema["required"] == ["a"] and add.input_schema["properties"]["b"]["default"] == 1


def test_an_mcp_client_calls_a_function_and_gets_its_result(repo: Path) -> None:
    async def go() -> tuple[Any, Any]:
        async with session(repo) as s:
            return await s.call_tool("add", {"a": 40, "b": 2}), await s.call_tool("add", {"a": 41})

    both, default = run(go())
    assert not both.is_error and text_of(both) == "42"
    assert not default.is_error and text_of(default) == "42"


def test_a_failing_call_is_an_mcp_tool_error_and_the_server_keeps_serving(repo: Path) -> None:
    async def go() -> list[Any]:
        async with session(repo) as s:
            return [await s.call_tool("fail", {"reason": "too late"}),
                    await s.call_tool("add", {"a": "not a number", "c": 3}),
                    await s.call_tool("no_such_tool", {}),
                    await s.call_tool("add", {"a": 1, "b": 1})]

    raised, bad_args, unknown, after = run(go())
    assert raised.is_error and "ValueError: refused: too late" in text_of(raised)
    assert bad_args.is_error and "bad arguments for add" in text_of(bad_args)
    assert unknown.is_error and "there is no function 'no_such_tool'" in text_of(unknown)
    assert not after.is_error and text_of(after) == "2"


def test_function_code_sees_no_secret_of_the_server(repo: Path) -> None:
    (repo / "secret.txt").write_text(SECRET)

    async def go() -> tuple[Any, Any, Any]:
        async with session(repo, env={"GITHUB_TOKEN": "ghp_secret"}) as s:
            return (await s.call_tool("peek", {"name": "OPENAI_API_KEY"}), await s.call_tool("peek", {"name": "GITHUB_TOKEN"}),
                    await s.call_tool("read", {"path": str(repo / "secret.txt")}))

    key, token, file = run(go())
    assert text_of(key) == "<unset>" and text_of(token) == "<unset>"
    assert file.is_error and SECRET not in text_of(file)


# ------------------------------------------------------------------ --rev and pinning


def test_rev_serves_exactly_the_functions_of_that_revision_read_from_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"functions/add.py": ADD})
    git(repo, "tag", "v1")
    (repo / "functions" / "add.py").write_text(ADD.replace("return a + b", "return a + b + 1000"))
    (repo / "functions" / "peek.py").write_text(PEEK)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v2")
    (repo / "functions" / "add.py").write_text(ADD.replace("return a + b", "return -1"))  # uncommitted
    (repo / "functions" / "fail.py").write_text(FAIL)  # untracked

    async def go(*args: str) -> tuple[list[str], str]:
        async with session(repo, *args) as s:
            names = [t.name for t in (await s.list_tools()).tools]
            return names, text_of(await s.call_tool("add", {"a": 1, "b": 2}))

    assert run(go("--rev", "v1")) == (["add"], "3")
    assert run(go()) == (["add", "peek"], "1003")  # HEAD as committed, not the working tree


VAL = "".join(json.dumps({"id": f"t{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(5))


def scored_by_forgegit_eval(repo: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forgegit eval --tasks tasks/val.jsonl` at HEAD against a scripted model that gets 4 of 5 right."""
    def script(request: dict[str, Any]) -> Any:
        n = int(re.findall(r"\d+", request["messages"][-1]["content"])[0])
        return text(f"Final answer: {n + 1 if n < 4 else 0}")

    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["eval", "--tasks", "tasks/val.jsonl", "--model", "gpt-test", "--json"])
    assert result.exit_code == 0, result.output
    assert '"passed": 4' in result.output


def test_a_tagged_revision_is_served_with_its_recorded_scores_and_sandbox_level(
        tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", {"functions/add.py": ADD, "tasks/val.jsonl": VAL})
    git(repo, "checkout", "-q", "-b", "forgegit/train/r1")
    (repo / "functions" / "peek.py").write_text(PEEK)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "epoch 1: add peek")
    scored_by_forgegit_eval(repo, scripted, llm_env, monkeypatch)  # recorded on the training branch
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("docs\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docs")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge the trained functions", "forgegit/train/r1")
    git(repo, "tag", "v3")  # the merge commit: same functions as the scored epoch, no note of its own
    merge = git(repo, "rev-parse", "v3")

    async def go() -> tuple[Optional[str], str, list[str]]:
        async with session(repo, "--rev", "v3") as s:
            info = await s.read_resource("forgegit://revision")
            uris = [str(r.uri) for r in (await s.list_resources()).resources]
            return s.instructions, str(getattr(info.contents[0], "text", "")), uris

    instructions, info_text, uris = run(go())
    assert instructions is not None
    assert f"v3 (commit {merge[:12]}, tags v3)" in instructions
    assert "tasks/val.jsonl with gpt-test: 4/5 (0.800)" in instructions
    assert "secrets-safe" in instructions
    assert "Sandbox: secrets-safe" in instructions
    info = json.loads(info_text)
    assert info["rev"] == "v3" and info["commit"] == merge and info["tags"] == ["v3"]
    assert info["functions"] == ["add", "peek"]
    assert [(s["tasks_file"], s["passed"], s["total"]) for s in info["scores"]] == [("tasks/val.jsonl", 4, 5)]
    assert info["scores"][0]["recorded_on"] == git(repo, "rev-parse", "forgegit/train/r1")
    assert info["sandbox"]["level"] == "secrets-safe"
    assert "forgegit://functions/peek.py" in uris


# ------------------------------------------------------------------ bad input, fail closed


def test_serve_rejects_an_unknown_revision_with_one_line(repo: Path) -> None:
    proc = serve_fails(repo, "--rev", "v9")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "forgegit: error: unknown revision 'v9'\n"


def test_serve_rejects_functions_that_fail_check_with_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"functions/add.py": ADD, "functions/bad.py": "def bad(x):\n    return x\n"})
    proc = serve_fails(repo)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: functions at HEAD")
    assert "do not pass `forgegit check`" in lines[0] and "functions/bad.py:1" in lines[0]


def test_serve_rejects_a_repository_without_functions_with_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "nothing\n"})
    proc = serve_fails(repo)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("forgegit: error: there are no functions to serve at HEAD") and proc.stderr.count("\n") == 1


def _can_hide_landlock() -> bool:
    try:
        import pyseccomp  # noqa: F401
    except ImportError:
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _can_hide_landlock(), reason="needs Linux and pyseccomp to emulate a kernel without Landlock")
def test_serve_refuses_below_secrets_safe_unless_unsafe_sandbox(repo: Path, tmp_path: Path) -> None:
    no_landlock = [sys.executable, str(HERE / "as_user.py"), "no-landlock", "--"]
    proc = subprocess.run([*no_landlock, sys.executable, *serve_argv(repo)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: the sandbox cannot keep secrets safe here")
    assert "--unsafe-sandbox" in lines[0]

    stderr = tmp_path / "stderr.txt"

    async def go() -> str:
        async with session(repo, "--unsafe-sandbox", stderr=stderr, command=no_landlock) as s:
            return text_of(await s.call_tool("add", {"a": 2, "b": 3}))

    assert run(go()) == "5"
    assert "sandbox: WARNING, running function code unsafely as asked: unsafe" in stderr.read_text()


# ------------------------------------------------------------------ transports and shutdown


def test_serve_says_what_it_serves_on_stderr_and_leaves_nothing_behind(repo: Path, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.txt"
    temp = shared_dir("forgegit-serve-test-")  # the workers' temp dirs go here (reachable by their own uids)
    try:
        async def go() -> str:
            async with session(repo, stderr=stderr, env={"TMPDIR": temp}) as s:
                result = text_of(await s.call_tool("add", {"a": 1}))
                assert os.listdir(temp), "the workers' temp dirs should be here while serving"
                return result

        assert run(go()) == "2"
        said = stderr.read_text()
        assert re.search(r"forgegit serve: 4 tools from HEAD \(commit [0-9a-f]{12}\): add, fail, peek, read", said)
        assert "sandbox: secrets-safe" in said and "serving MCP over stdio" in said
        assert os.listdir(temp) == []  # closing the client stopped the workers and removed their dirs
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_stdio_server_cleanly(repo: Path, sig: signal.Signals) -> None:
    temp = shared_dir("forgegit-serve-test-")
    proc = subprocess.Popen([sys.executable, *serve_argv(repo)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": temp})
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "serving MCP over stdio" in line:
                break
        assert os.listdir(temp)
        proc.send_signal(sig)
        assert proc.wait(30) == 0
        assert os.listdir(temp) == []
    finally:
        proc.kill()
        proc.communicate()
        shutil.rmtree(temp, ignore_errors=True)


def test_http_serves_streamable_http_on_loopback(repo: Path) -> None:
    proc = subprocess.Popen([sys.executable, *serve_argv(repo, "--http", ":0")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENAI_API_KEY": SECRET})
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            match = re.search(r"serving MCP \(streamable HTTP\) at (\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/mcp", url), url

        async def go() -> tuple[list[str], str, str]:
            async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                names = [t.name for t in (await s.list_tools()).tools]
                return (names, text_of(await s.call_tool("add", {"a": 20, "b": 22})),
                        text_of(await s.call_tool("peek", {"name": "OPENAI_API_KEY"})))

        assert run(go()) == (["add", "fail", "peek", "read"], "42", "<unset>")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("value, expected", [
    ("8000", ("127.0.0.1", 8000)),
    (":0", ("127.0.0.1", 0)),
    ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ("localhost:9", ("localhost", 9)),
    ("[::1]:8000", ("::1", 8000)),
])
def test_http_address_defaults_to_loopback(value: str, expected: tuple[str, int]) -> None:
    assert parse_http(value) == expected


@pytest.mark.parametrize("value", ["", "host:", "127.0.0.1:http", "[::1]", "1:70000"])
def test_a_bad_http_address_is_one_line(value: str) -> None:
    with pytest.raises(ForgegitError, match=r"^--http "):
        parse_http(value)


def test_a_port_in_use_is_one_line(repo: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve_fails(repo, "--http", f"127.0.0.1:{port}")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"forgegit: error: --http: cannot listen on 127.0.0.1:{port}: Address already in use\n"
