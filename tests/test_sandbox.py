"""The sandbox runs untrusted function code in real worker processes; nothing here is mocked."""
from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from forgegit.sandbox import WORKER_IDS, Limits, Sandbox, ToolOutcome, check_imports

T = TypeVar("T")
IS_ROOT = os.geteuid() == 0

DIGIT_SUM = b'''"""Sum of the digits of n."""


def digit_sum(n: int) -> int:
    """Sum of the digits of n."""
    total = sum(int(c) for c in str(n))
    if n == 7:
        return total / 0
    return total
'''


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def fn(name: str, body: str, header: str = "import os\n") -> dict[str, bytes]:
    """A one-function file set: `def name(**kw)` with body (indented by us)."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return {f"{name}.py": f"{header}\n\ndef {name}(**kw):\n{lines}\n".encode()}


async def with_sandbox(files: dict[str, bytes], use: Callable[[Sandbox], Awaitable[T]], **kw: Any) -> T:
    limits = kw.pop("limits", Limits(timeout=5))
    async with Sandbox(files, limits, **kw) as sb:
        return await use(sb)


def call(files: dict[str, bytes], name: str, arguments: dict[str, Any] | None = None, **kw: Any) -> ToolOutcome:
    return run(with_sandbox(files, lambda sb: sb.call(name, arguments or {}), **kw))


def worker_processes(marker: str) -> list[int]:
    """Host pids of processes whose command line mentions marker (a worker's temp dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return pids


def eventually(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# ---------------------------------------------------------------- results the agent sees


def test_a_call_returns_the_value_and_printed_output() -> None:
    files = {**fn("shout", "print('working on', kw['word'])\nreturn kw['word'].upper()"),
             **fn("info", "return {'n': kw['n'], 'items': [1, 2]}")}

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("shout", {"word": "hey"}), await sb.call("info", {"n": 3})]

    shout, info = run(with_sandbox(files, use))
    assert shout.ok and shout.error is None
    assert shout.output.startswith("HEY")
    assert "working on hey" in shout.output
    assert info.ok and info.output == '{"n": 3, "items": [1, 2]}'


def test_an_exception_names_its_type_message_and_line() -> None:
    out = call({"digit_sum.py": DIGIT_SUM}, "digit_sum", {"n": 7})
    assert not out.ok and out.error == "exception"
    assert out.output.startswith("ZeroDivisionError: division by zero (digit_sum.py line 8)")
    assert call({"digit_sum.py": DIGIT_SUM}, "digit_sum", {"n": 123}).output == "6"


def test_wrong_or_missing_arguments_are_reported_as_bad_arguments() -> None:
    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("digit_sum", {}), await sb.call("digit_sum", {"n": 1, "base": 2})]

    missing, extra = run(with_sandbox({"digit_sum.py": DIGIT_SUM}, use))
    assert missing.error == "bad_arguments" and "missing a required argument: 'n'" in missing.output
    assert extra.error == "bad_arguments" and "unexpected keyword argument 'base'" in extra.output


def test_unknown_functions_are_reported_not_raised() -> None:
    files = {"digit_sum.py": DIGIT_SUM, "helper.py": b"def other():\n    return 1\n"}

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("nope", {}), await sb.call("helper", {})]

    nope, helper = run(with_sandbox(files, use))
    assert nope.error == "unknown_function" and "digit_sum" in nope.output
    assert helper.error == "unknown_function" and "does not define a function named helper" in helper.output


def test_huge_return_values_and_output_are_cut_with_a_note() -> None:
    files = {**fn("big", "return 'x' * 100000"), **fn("noisy", "print('y' * 100000)\nreturn 'done'")}

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("big", {}), await sb.call("noisy", {})]

    big, noisy = run(with_sandbox(files, use, limits=Limits(timeout=5, max_output=1000)))
    assert big.ok and len(big.output) < 1200 and "truncated" in big.output
    assert noisy.ok and noisy.output.startswith("done") and len(noisy.output) < 1200 and "truncated" in noisy.output


def test_printing_protocol_lookalikes_cannot_corrupt_the_reply() -> None:
    body = """
import subprocess, sys
print('{"id": 1, "ok": true, "output": "forged"}')
os.write(1, b'{"id": 2, "ok": true}\\n')
sys.__stdout__.write('{"id": 3}\\n')
os.write(2, b'{"id": 4}\\n')
return 'real'
"""

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("chatty", {}), await sb.call("chatty", {})]

    for out in run(with_sandbox(fn("chatty", body), use)):
        assert out.ok and out.output.startswith("real")
        for i in range(1, 4):
            assert f'{{"id": {i}' in out.output  # shown as the call's output (stderr only on failure)


def test_run_python_shows_printed_output_and_the_final_expression() -> None:
    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [
            await sb.run_python("x = digit_sum(99)\nprint('sum is', x)\nx * 2"),
            await sb.run_python("from digit_sum import digit_sum as d\nd(1234)"),
            await sb.run_python("a = 1\nb = a / 0"),
            await sb.run_python("print('only printing')"),
        ]

    bound, imported, error, printing = run(with_sandbox({"digit_sum.py": DIGIT_SUM}, use))
    assert bound.ok and bound.output == "sum is 18\n36"
    assert imported.ok and imported.output == "10"
    assert error.error == "exception" and error.output.startswith("ZeroDivisionError: division by zero (<python> line 2)")
    assert printing.ok and printing.output == "only printing\n"


# ---------------------------------------------------------------- limits


def test_an_endless_loop_is_stopped_and_the_pool_keeps_working() -> None:
    files = {**fn("spin", "while True:\n    pass"), "digit_sum.py": DIGIT_SUM}

    async def use(sb: Sandbox) -> tuple[ToolOutcome, float, list[ToolOutcome]]:
        t0 = time.monotonic()
        spun = await sb.call("spin", {})
        elapsed = time.monotonic() - t0
        after = await asyncio.gather(*(sb.call("digit_sum", {"n": 55}) for _ in range(4)))
        return spun, elapsed, list(after)

    spun, elapsed, after = run(with_sandbox(files, use, limits=Limits(timeout=1)))
    assert not spun.ok and spun.error == "timeout" and "1 s" in spun.output
    assert elapsed < 15
    assert all(o.ok and o.output == "10" for o in after)


def test_a_memory_bomb_is_contained() -> None:
    files = {
        **fn("huge", "x = bytearray(10**10)\nreturn len(x)"),
        **fn("grow", "x = []\nwhile True:\n    x.append(' ' * 10000)"),
        "digit_sum.py": DIGIT_SUM,
    }

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("huge", {}), await sb.call("grow", {}), await sb.call("digit_sum", {"n": 12})]

    huge, grow, after = run(with_sandbox(files, use, limits=Limits(timeout=30, memory_mb=256)))
    assert huge.error == "memory" and "MemoryError" in huge.output and "huge.py line" in huge.output
    assert grow.error in ("memory", "crash")
    assert after.ok and after.output == "3"


def test_a_function_cannot_fill_the_disk() -> None:
    body = """
chunk = b'x' * (1 << 20)
with open('big.bin', 'wb') as f:
    for _ in range(200):
        f.write(chunk)
return 'wrote 200 MB'
"""
    out = call(fn("fill", body), "fill")
    assert out.error == "exception" and "File too large" in out.output and "fill.py line" in out.output


def test_a_function_cannot_start_a_process_so_a_fork_bomb_is_inert() -> None:
    body = """
import subprocess
errors = []
for attempt in (os.fork, lambda: subprocess.run(['true']), lambda: os.posix_spawn('/bin/true', ['true'], {})):
    try:
        attempt()
        errors.append('started')
    except OSError as exc:
        errors.append(exc.__class__.__name__)
return errors
"""
    files = {**fn("bomb", body), "digit_sum.py": DIGIT_SUM}

    async def use(sb: Sandbox) -> tuple[ToolOutcome, ToolOutcome]:
        return await sb.call("bomb", {}), await sb.call("digit_sum", {"n": 99})

    bomb, after = run(with_sandbox(files, use))
    assert bomb.ok and "started" not in bomb.output and "PermissionError" in bomb.output, bomb.output
    assert after.ok and after.output == "18"


def test_a_crashing_function_becomes_a_crash_outcome() -> None:
    files = {
        **fn("leave", "os._exit(3)"),
        **fn("segv", "import ctypes\nreturn ctypes.string_at(0)"),
        **fn("suicide", "import signal\nos.kill(os.getpid(), signal.SIGKILL)\nos.killpg(os.getpgid(0), signal.SIGKILL)"),
        "digit_sum.py": DIGIT_SUM,
    }

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call(n, {}) for n in ("leave", "segv", "suicide")] + [await sb.call("digit_sum", {"n": 5})]

    leave, segv, suicide, after = run(with_sandbox(files, use))
    assert leave.error == "crash" and "exited with code 3" in leave.output
    assert segv.error == "crash" and "SIGSEGV" in segv.output
    assert not suicide.ok and suicide.error in ("crash", "exception")
    assert after.ok and after.output == "5"


def test_a_function_cannot_kill_the_host() -> None:
    body = """
import signal
errors = []
for target in (kw['host'], os.getppid()):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError as exc:
        errors.append(exc.__class__.__name__)
try:
    os.killpg(kw['host_group'], signal.SIGKILL)
except OSError as exc:
    errors.append(exc.__class__.__name__)
return errors
"""
    args = {"host": os.getpid(), "host_group": os.getpgid(0)}

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("kill", args), await sb.call("kill", args)]

    outcomes = run(with_sandbox(fn("kill", body), use))
    assert os.getpid() == args["host"]  # still here
    assert all(o.error in (None, "crash", "exception") for o in outcomes)


def test_calls_queue_and_run_concurrently_on_the_pool() -> None:
    files = fn("slow", "import time\ntime.sleep(0.5)\nreturn [kw['i'] * 2, os.getcwd(), os.getuid()]")

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return list(await asyncio.gather(*(sb.call("slow", {"i": i}) for i in range(8))))

    t0 = time.monotonic()
    outcomes = run(with_sandbox(files, use, workers=4))
    assert time.monotonic() - t0 < 60
    import json

    values = [json.loads(o.output) for o in outcomes]
    assert [v[0] for v in values] == [i * 2 for i in range(8)]
    assert len({v[1] for v in values}) >= 2  # more than one worker served them
    if IS_ROOT:  # each worker has its own uid: workers cannot signal each other
        assert len({v[2] for v in values}) == len({v[1] for v in values})


def test_concurrent_calls_without_start_start_the_pool_once() -> None:
    async def use() -> list[ToolOutcome]:
        sb = Sandbox({"digit_sum.py": DIGIT_SUM}, workers=2)
        try:
            return list(await asyncio.gather(*(sb.call("digit_sum", {"n": i}) for i in range(6))))
        finally:
            await sb.close()

    assert [o.output for o in run(use())] == [str(i) for i in range(6)]


def test_workers_are_recycled_after_n_calls() -> None:
    files = {"count.py": b"CALLS = []\n\ndef count():\n    CALLS.append(1)\n    return len(CALLS)\n"}

    async def use(sb: Sandbox) -> list[str]:
        return [(await sb.call("count", {})).output for _ in range(5)]

    assert run(with_sandbox(files, use, workers=1, recycle_after=2)) == ["1", "2", "1", "2", "1"]


def test_cancelling_a_call_leaves_the_pool_usable() -> None:
    files = {**fn("spin", "while True:\n    pass"), "digit_sum.py": DIGIT_SUM}

    async def use(sb: Sandbox) -> ToolOutcome:
        task = asyncio.ensure_future(sb.call("spin", {}))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await sb.call("digit_sum", {"n": 11})

    assert run(with_sandbox(files, use, workers=1)).output == "2"


# ---------------------------------------------------------------- isolation


def test_secrets_in_the_host_environment_are_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("SOME_SECRET", "hunter2")
    out = call(fn("env", "return dict(os.environ)"), "env")
    assert out.ok
    for leaked in ("OPENAI_API_KEY", "GITHUB_TOKEN", "SOME_SECRET", "sk-very-secret", "ghp_secret", "hunter2"):
        assert leaked not in out.output
    assert '"PYTHONHASHSEED": "0"' in out.output and '"HOME"' in out.output


def test_code_runs_in_its_own_temp_dir_which_is_removed_afterwards() -> None:
    body = "open('scratch.txt', 'w').write('x')\nreturn [os.getcwd(), os.environ['HOME'], os.environ['TMPDIR'], os.listdir('.')]"

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("where", {}), await sb.call("where", {})]

    import json

    first, second = (json.loads(o.output) for o in run(with_sandbox(fn("where", body), use, workers=1)))
    cwd = first[0]
    assert cwd != os.getcwd() and cwd.startswith(tempfile.gettempdir())
    assert first[1] == cwd and first[2] == cwd
    assert second[3] == ["scratch.txt"]  # files from the previous call were removed
    assert not os.path.exists(cwd)


def test_code_cannot_write_outside_its_dir_or_read_the_hosts_files(tmp_path: Path) -> None:
    secret = Path(os.environ["HOME"]) / ".git-credentials"
    secret.write_text("https://user:token@example.com\n")
    body = """
results = {}
for label, action in [
    ('write_tmp_path', lambda: open(kw['tmp'] + '/evil.txt', 'w').write('x')),
    ('write_root', lambda: open('/root/evil.txt', 'w').write('x')),
    ('read_home', lambda: open(kw['secret']).read()),
    ('list_root', lambda: os.listdir('/root')),
]:
    try:
        action()
        results[label] = 'allowed'
    except OSError as exc:
        results[label] = exc.__class__.__name__
return [os.getuid(), results]
"""
    out = call(fn("probe", body), "probe", {"tmp": str(tmp_path), "secret": str(secret)})
    uid, results = __import__("json").loads(out.output)
    assert uid in WORKER_IDS or not IS_ROOT
    assert results["write_tmp_path"] == "PermissionError" and not (tmp_path / "evil.txt").exists()
    assert results["write_root"] in ("PermissionError", "FileNotFoundError", "OSError")
    assert results["read_home"] in ("PermissionError", "FileNotFoundError")
    assert not os.path.exists("/root/evil.txt")


def test_the_hosts_working_dir_and_home_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """A function must not read the repo it is trained in (held-out answers) or the user's HOME."""
    repo, home = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    try:
        for d, name in ((repo, "answers.jsonl"), (home, ".git-credentials")):
            d.chmod(0o755)
            (d / name).write_text("secret\n")
            (d / name).chmod(0o644)
        monkeypatch.chdir(repo)
        monkeypatch.setenv("HOME", str(home))
        body = """
seen = {}
for path in kw['paths']:
    try:
        seen[path] = open(path).read()
    except OSError as exc:
        seen[path] = exc.__class__.__name__
return seen
"""
        paths = [str(repo / "answers.jsonl"), str(home / ".git-credentials")]

        out = call(fn("peek", body), "peek", {"paths": paths})
        assert out.ok and "secret" not in out.output and "PermissionError" in out.output
    finally:
        for d in (repo, home):
            for p in d.iterdir():
                p.unlink()
            d.rmdir()


def test_network_connections_to_the_host_fail() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    body = """
import socket
try:
    socket.create_connection(('127.0.0.1', kw['port']), timeout=3).close()
    return 'connected'
except OSError as exc:
    return 'blocked: ' + exc.__class__.__name__
"""

    try:
        out = call(fn("net", body), "net", {"port": port})
        assert out.ok and out.output.startswith("blocked")
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_module_level_code_runs_only_in_the_worker_and_confined() -> None:
    shared = Path(tempfile.mkdtemp())
    shared.chmod(0o777)
    source = (f"import os\nIMPORTED_BY = os.getpid()\nopen({str(shared)!r} + '/pwned', 'w').write('x')\n\n"
              "def pwn():\n    return IMPORTED_BY\n").encode()
    try:
        Sandbox({"pwn.py": source})
        assert not list(shared.iterdir())  # constructing the sandbox runs nothing
        out = run(with_sandbox({"pwn.py": source}, lambda s: s.call("pwn", {})))
        assert out.error == "exception" and "PermissionError" in out.output and "pwn.py line 3" in out.output
        assert "pwn" not in sys.modules and not list(shared.iterdir())
        assert "PermissionError" in run(check_imports({"pwn.py": source}))["pwn.py"]
        quiet = source.replace(b"open(", b"str(").replace(b", 'w').write('x')", b")")
        out = run(with_sandbox({"pwn.py": quiet}, lambda s: s.call("pwn", {})))
        assert out.ok and int(out.output) != os.getpid()
    finally:
        for p in shared.iterdir():
            p.unlink()
        shared.rmdir()


# ---------------------------------------------------------------- broken function files


def test_a_file_that_fails_to_import_does_not_break_the_others() -> None:
    files = {
        "digit_sum.py": DIGIT_SUM,
        "broken.py": b"def broken(:\n    pass\n",
        "raises.py": b"x = 1 / 0\n\ndef raises():\n    return 1\n",
        "exits.py": b"import os\nos._exit(1)\n\ndef exits():\n    return 1\n",
    }

    async def use(sb: Sandbox) -> dict[str, ToolOutcome]:
        names = ["broken", "raises", "exits", "digit_sum"]
        return {n: await sb.call(n, {"n": 4} if n == "digit_sum" else {}) for n in names}

    out = run(with_sandbox(files, use))
    assert out["broken"].error == "exception" and "SyntaxError" in out["broken"].output
    assert "broken.py line 1" in out["broken"].output
    assert out["raises"].error == "exception" and "ZeroDivisionError" in out["raises"].output
    assert "raises.py line 1" in out["raises"].output
    assert out["exits"].error == "crash"
    assert out["digit_sum"].ok and out["digit_sum"].output == "4"


def test_check_imports_reports_syntax_errors_and_misnamed_functions() -> None:
    files = {
        "good.py": b"def good():\n    return 1\n",
        "syntax.py": b"def syntax(:\n    pass\n",
        "misnamed.py": b"def something_else():\n    return 1\n",
        "hangs.py": b"while True:\n    pass\n",
        "dies.py": b"import os\nos._exit(2)\n",
        "json.py": b"def json():\n    return 1\n",
        "functions/nested.py": b"def nested():\n    return 1\n",
    }
    errors = run(check_imports(files, Limits(timeout=2)))
    assert set(errors) == {"syntax.py", "misnamed.py", "hangs.py", "dies.py", "json.py"}
    assert "SyntaxError" in errors["syntax.py"] and "syntax.py line 1" in errors["syntax.py"]
    assert "does not define a function named misnamed" in errors["misnamed.py"]
    assert "something_else" in errors["misnamed.py"]
    assert "hangs.py" in errors["hangs.py"] and ("longer than" in errors["hangs.py"] or "timeout" in errors["hangs.py"])
    assert "dies.py" in errors["dies.py"] and "exited with code 2" in errors["dies.py"]
    assert "standard-library" in errors["json.py"]


def test_permissions_of_the_worker_dir_are_private() -> None:
    body = "return oct(os.stat('.').st_mode & 0o777)"
    out = call(fn("perm", body), "perm")
    assert out.ok and out.output == oct(stat.S_IRWXU)


def test_calling_after_close_is_an_error_outcome_not_an_exception() -> None:
    async def use() -> ToolOutcome:
        sb = Sandbox({"digit_sum.py": DIGIT_SUM})
        await sb.start()
        await sb.close()
        return await sb.call("digit_sum", {"n": 1})

    out = run(use())
    assert not out.ok and out.error == "crash" and "closed" in out.output



def test_without_namespaces_or_own_uid_the_sandbox_is_still_secrets_safe() -> None:
    """What a non-root host without user namespaces gets: Landlock and seccomp alone; limits still hold."""
    files = {
        **fn("spin", "while True:\n    pass"),
        **fn("leave", "os._exit(3)"),
        **fn("kill_parent", "import signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn os.getcwd()"),
        **fn("huge", "return len(bytearray(10**10))"),
        **fn("fill", "for i in range(100):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\nreturn 'filled'"),
        "digit_sum.py": DIGIT_SUM,
    }

    async def use() -> tuple[Sandbox, dict[str, ToolOutcome]]:
        sb = Sandbox(files, Limits(timeout=2, disk_mb=16), workers=1)
        sb._drop = sb._namespaces = False
        async with sb:
            out = {n: await sb.call(n, {}) for n in ("spin", "leave", "kill_parent", "huge", "fill")}
            out["after"] = await sb.call("digit_sum", {"n": 31})
        return sb, out

    sb, out = run(use())
    assert sb.isolation is not None and sb.isolation.safe, sb.isolation
    assert "namespace" not in sb.isolation.summary() and "own uid" not in sb.isolation.summary()
    assert sb.confinement["disk_quota"] == "watched"
    assert out["spin"].error == "timeout"
    assert out["leave"].error == "crash" and "exited with code 3" in out["leave"].output
    assert out["kill_parent"].error == "exception" and "PermissionError" in out["kill_parent"].output
    assert out["huge"].error == "memory"
    assert out["fill"].error == "disk" and "16 MB" in out["fill"].output
    assert out["after"].ok and out["after"].output == "4"


def test_code_writing_deeply_nested_json_to_the_protocol_pipe_only_fails_its_own_call() -> None:
    """Function code can find the worker's protocol pipe by fd number; what it writes there (nested
    100,000 deep, which json.loads cannot parse) becomes a crash outcome, and the pool goes on."""
    body = """
line = b'[' * 100000 + b']' * 100000 + b'\\\\n'
for fd in range(3, 12):
    try:
        os.write(fd, line)
    except OSError:
        pass
return 'wrote'
"""
    files = {**fn("nest", body), "digit_sum.py": DIGIT_SUM}

    async def use(sb: Sandbox) -> list[ToolOutcome]:
        return [await sb.call("nest", {}), await sb.call("digit_sum", {"n": 12})]

    nest, after = run(with_sandbox(files, use, workers=1))
    assert nest.error == "crash" and "malformed" in nest.output, nest
    assert after.ok and after.output == "3"


def test_a_flood_of_empty_files_counts_against_the_disk_quota() -> None:
    """Where no tmpfs bounds the temp dir (no namespaces), the host's watch counts every file, so
    100,000 empty files (inodes, not bytes) stop the call like 100 MB would."""
    body = "for i in range(100000):\n    open(f'e{i}', 'w').close()\nreturn 'flooded'"

    async def use() -> ToolOutcome:
        sb = Sandbox(fn("flood", body), Limits(timeout=30, disk_mb=16), workers=1)
        sb._namespaces = False
        async with sb:
            assert sb.confinement["disk_quota"] == "watched"
            return await sb.call("flood", {})

    out = run(use())
    assert out.error == "disk", out


def test_temp_dirs_a_killed_forgegit_left_behind_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """A SIGKILLed forgegit cannot tidy up; the next sandbox removes its temp dirs (and only those of
    processes that are gone)."""
    import subprocess

    from forgegit import sandbox as sandbox_module

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(tempfile.gettempdir()) / f"{sandbox_module.DIR_PREFIX}{int(dead.stdout)}-abc"
    alive = Path(tempfile.gettempdir()) / f"{sandbox_module.DIR_PREFIX}{os.getppid()}-abc"
    for d in (stale, alive):
        (d / "work").mkdir(parents=True)
    try:
        sandbox_module._swept.clear()
        assert call(fn("ok", "return 1"), "ok").ok
        assert not stale.exists() and alive.exists()
    finally:
        for d in (stale, alive):
            if d.exists():
                (d / "work").rmdir()
                d.rmdir()


def test_removing_a_worker_dir_never_changes_the_temp_base_and_gets_past_locked_dirs(tmp_path: Path) -> None:
    """The host's clean-up unlocks directories the worker made unreadable (mode 0300), but only inside
    the worker's dir: /tmp's own mode stays as it was even when the dir is already gone."""
    from forgegit.sandbox import _remove_tree

    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o1777)
    gone = base / "forgegit-sandbox-gone"
    _remove_tree(str(gone))
    locked = base / "forgegit-sandbox-locked"
    (locked / "work" / "deep").mkdir(parents=True)
    (locked / "work" / "deep" / "f").write_text("x")
    (locked / "work" / "deep").chmod(0o300)
    (locked / "work").chmod(0)
    _remove_tree(str(locked))
    assert not locked.exists()
    assert stat.S_IMODE(base.stat().st_mode) == 0o1777
