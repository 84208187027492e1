"""Sandbox worker: confines itself (`confine.py`), then runs untrusted function code on request.

Started by `forgegit.sandbox` as `python -s -B [-P] sandbox_worker.py CONFIG_JSON`; never imported by the host.
Protocol: one JSON object per line on the worker's original stdin/stdout, which are moved to private
fds at start-up; fds 1 and 2 then point at in-memory capture files, so user code printing (even from C)
cannot corrupt the protocol.

One process, one call at a time: the worker confines itself before it receives the function files,
and the seccomp filter refuses new processes, so nothing the code does outlives the worker. After
each call it empties its work dir and restores its environment variables.
"""
from __future__ import annotations

import ast
import base64
import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import io
import json
import linecache
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any, BinaryIO, Optional, Sequence

PYTHON_FILE = "<python>"  # file name of code run by the `python` tool

# State of the serving process.
SOURCES: dict[str, bytes] = {}  # module name -> source
IMPORT_ERRORS: dict[str, str] = {}  # module name -> why it cannot be imported
STATE: dict[str, Any] = {}


# ---------------------------------------------------------------- loading function files


class FunctionFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports function files from memory: `import digit_sum` gives functions/digit_sum.py."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if path is None and fullname in SOURCES:
            return importlib.util.spec_from_loader(fullname, self, origin=f"{fullname}.py")
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        if name in IMPORT_ERRORS:
            raise ImportError(IMPORT_ERRORS[name])
        module.__file__ = f"{name}.py"
        code = compile(SOURCES[name], f"{name}.py", "exec", dont_inherit=True)
        exec(code, module.__dict__)

    def get_source(self, fullname: str) -> str:
        return SOURCES[fullname].decode("utf-8", "replace")


class _ImportTimeout(BaseException):
    """Raised by SIGALRM when module-level code runs too long."""


def _alarm(signum: int, frame: Optional[types.FrameType]) -> None:
    raise _ImportTimeout()


def clash(name: str) -> Optional[str]:
    """Why a function file name cannot be a module name here, or None."""
    if not name.isidentifier():
        return f"{name}.py: the file name is not a valid Python identifier"
    if name in sys.stdlib_module_names or name in sys.builtin_module_names or name in STATE["preloaded"]:
        return f"{name}.py: the name {name!r} clashes with a standard-library module"
    return None


def load(name: str) -> types.ModuleType:
    """Import function module name (cached); raises ImportError with a clear message on failure."""
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__loader__", None) is STATE["finder"]:
        return mod
    if name in IMPORT_ERRORS:
        raise ImportError(IMPORT_ERRORS[name])
    problem = clash(name)
    if problem:
        IMPORT_ERRORS[name] = problem
        raise ImportError(problem)
    try:
        return importlib.import_module(name)
    except MemoryError:
        raise
    except _ImportTimeout:
        IMPORT_ERRORS[name] = f"{name}.py: importing it took longer than {STATE['timeout']:g} s (module-level code)"
    except BaseException as exc:  # noqa: BLE001 - untrusted code may raise anything
        IMPORT_ERRORS[name] = f"{name}.py failed to import: {describe(exc)}"
    sys.modules.pop(name, None)
    raise ImportError(IMPORT_ERRORS[name])


def preload() -> None:
    """Import every function file now (each under the time limit), remembering failures."""
    for name in sorted(SOURCES):
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, STATE["timeout"])
        try:
            load(name)
        except (ImportError, _ImportTimeout, MemoryError):
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)


# ---------------------------------------------------------------- describing outcomes


def _user_files() -> set[str]:
    return {f"{n}.py" for n in SOURCES} | {PYTHON_FILE}


def location(exc: BaseException) -> Optional[tuple[str, int]]:
    """(file, line) of the innermost frame in a function file or the python cell."""
    files = _user_files()
    if isinstance(exc, SyntaxError) and exc.filename in files and exc.lineno:
        return exc.filename, exc.lineno
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename in files:
            found = (frame.f_code.co_filename, lineno)
    return found


def describe(exc: BaseException) -> str:
    """'ZeroDivisionError: division by zero (digit_sum.py line 7)'."""
    if isinstance(exc, SyntaxError):
        text = f"{type(exc).__name__}: {exc.msg}"
    else:
        try:
            msg = str(exc)
        except Exception:  # noqa: BLE001
            msg = "<unprintable message>"
        text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    where = location(exc)
    return f"{text} ({where[0]} line {where[1]})" if where else text


def cut(text: str, limit: int, total: Optional[int] = None) -> str:
    """text cut to limit characters, with a note saying so."""
    total = max(total or 0, len(text))
    if total <= limit:
        return text
    return f"{text[:limit]}\n[... output truncated: {total} characters in total, showing the first {limit}]"


def render(value: Any) -> str:
    """A return value as the agent sees it: str as-is, anything else as JSON (repr as a fallback)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return repr(value)


# ---------------------------------------------------------------- capturing output


def _reset_capture() -> None:
    for fd, target in ((STATE["out_fd"], 1), (STATE["err_fd"], 2)):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(fd, target)
    sys.stdout, sys.stderr = STATE["stdout"], STATE["stderr"]


def _read_capture(fd: int, limit: int) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, min(size, limit * 4 + 4), 0)
    text = data.decode("utf-8", "replace")
    return cut(text, limit, size if size > len(data) else None)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, STATE["stdout"], STATE["stderr"]):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


def captured() -> tuple[str, str]:
    """What the call printed to stdout and stderr (each cut to max_output)."""
    _flush()
    limit = STATE["max_output"]
    return _read_capture(STATE["out_fd"], limit), _read_capture(STATE["err_fd"], limit)


# ---------------------------------------------------------------- requests


def _failure(kind: str, message: str, out: str = "", err: str = "") -> dict[str, Any]:
    parts = [message]
    if out.strip():
        parts.append(f"stdout:\n{out}")
    if err.strip():
        parts.append(f"stderr:\n{err}")
    return {"ok": False, "error": kind, "output": cut("\n".join(parts), STATE["max_output"])}


def _from_exception(exc: BaseException, out: str, err: str) -> dict[str, Any]:
    if isinstance(exc, MemoryError):
        where = location(exc)
        at = f" ({where[0]} line {where[1]})" if where else ""
        reply = _failure("memory", f"MemoryError: the code exceeded the memory limit ({STATE['memory_mb']} MB){at}", out, err)
        reply["recycle"] = True
        return reply
    return _failure("exception", describe(exc), out, err)


def _success(text: str, out: str) -> dict[str, Any]:
    limit = STATE["max_output"]
    text = cut(text, limit)
    if out:
        text = f"{text}\n\nstdout:\n{out}" if text else out
    return {"ok": True, "error": None, "output": cut(text, limit)}


def do_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call <name>(**arguments) from functions/<name>.py."""
    if name not in SOURCES:
        return _failure("unknown_function", f"there is no function file {name}.py")
    try:
        mod = load(name)
    except ImportError as exc:
        return _failure("exception", str(exc))
    fn = getattr(mod, name, None)
    if not callable(fn):
        return _failure("unknown_function", f"{name}.py does not define a function named {name}")
    try:
        inspect.signature(fn).bind(**arguments)
    except TypeError as exc:
        return _failure("bad_arguments", f"bad arguments for {name}: {exc}")
    except ValueError:
        pass  # no signature to check (e.g. a builtin): let the call itself decide
    try:
        value = fn(**arguments)
        text = render(value)
        del value
    except BaseException as exc:  # noqa: BLE001 - untrusted code may raise anything
        guard_child()
        out, err = captured()
        return _from_exception(exc, out, err)
    guard_child()
    out, _ = captured()
    return _success(text, out)


def do_python(code: str) -> dict[str, Any]:
    """Run a notebook-like cell: every function pre-bound and importable; show a final expression."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for name in sorted(SOURCES):
        try:
            fn = getattr(load(name), name, None)
        except ImportError:
            continue
        if callable(fn):
            namespace[name] = fn
    linecache.cache[PYTHON_FILE] = (len(code), None, code.splitlines(True), PYTHON_FILE)
    try:
        tree = ast.parse(code, PYTHON_FILE)
        tail = tree.body[-1] if tree.body else None
        last = tail if isinstance(tail, ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, PYTHON_FILE, "exec", dont_inherit=True), namespace)
        value = None
        if last is not None:
            expr = ast.Expression(last.value)
            value = eval(compile(expr, PYTHON_FILE, "eval", dont_inherit=True), namespace)
        shown = "" if value is None else repr(value)
        del value
    except BaseException as exc:  # noqa: BLE001
        guard_child()
        out, err = captured()
        return _from_exception(exc, out, err)
    guard_child()
    out, _ = captured()
    limit = STATE["max_output"]
    text = out + (shown if not out or out.endswith("\n") else "\n" + shown) if shown else out
    return {"ok": True, "error": None, "output": cut(text, limit)}


def do_check(name: str) -> dict[str, Any]:
    """Import name and check it defines a callable of the same name."""
    try:
        mod = load(name)
    except ImportError as exc:
        return {"ok": False, "error": "exception", "output": str(exc)}
    if name.startswith("_"):
        return {"ok": True, "error": None, "output": ""}  # a helper module
    if not callable(getattr(mod, name, None)):
        defined = sorted(k for k, v in vars(mod).items() if inspect.isfunction(v) and v.__module__ == name)
        hint = f" (it defines {', '.join(defined)})" if defined else ""
        return {"ok": False, "error": "unknown_function", "output": f"{name}.py does not define a function named {name}{hint}"}
    return {"ok": True, "error": None, "output": ""}


def guard_child() -> None:
    """A process forked by user code must never answer on the protocol: it just exits."""
    if os.getpid() != STATE.get("pid", os.getpid()):
        os._exit(0)


def _in_child() -> None:
    for fd in (STATE["proto_in"], STATE["proto_out"]):
        try:
            os.close(fd)
        except OSError:
            pass


def cleanup() -> None:
    """After a call: empty the work dir, restore the environment (and, unconfined, kill leftovers)."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    if not STATE["seccomp"]:
        _kill_group_members()  # with seccomp the code cannot have started a process
        _reap()
    os.chdir(STATE["workdir"])
    for entry in os.listdir(STATE["workdir"]):
        path = os.path.join(STATE["workdir"], entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    os.environ.clear()
    os.environ.update(STATE["environ"])


def _kill_group_members() -> None:
    """Unconfined only: kill the other processes of our process group."""
    me, pgid = os.getpid(), os.getpgid(0)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def _reap() -> None:
    """Collect exited children (and, as init, orphans), waiting at most ~2 s."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)


def handle(msg: dict[str, Any]) -> dict[str, Any]:
    op = msg.get("op")
    if op == "call":
        return do_call(str(msg["name"]), dict(msg.get("arguments") or {}))
    if op == "python":
        return do_python(str(msg.get("code", "")))
    if op == "check":
        return do_check(str(msg["name"]))
    return {"ok": False, "error": "crash", "output": f"unknown request {op!r}"}


def send(obj: dict[str, Any]) -> None:
    data = (json.dumps(obj) + "\n").encode()
    fd = STATE["proto_out"]
    while data:
        data = data[os.write(fd, data):]


def _threads() -> int:
    """Threads of this process as the kernel counts them (also those `_thread` started, which
    `threading` does not know); Landlock lets the worker list its own /proc/<pid>/task only."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def serve(reader: BinaryIO) -> None:
    while True:
        line = reader.readline()
        if not line:
            os._exit(0)
        msg = json.loads(line)
        _reset_capture()
        try:
            reply = handle(msg)
        except BaseException as exc:  # noqa: BLE001 - a bug here must not kill the worker silently
            guard_child()
            reply = _failure("crash", f"worker error: {describe(exc)}")
        guard_child()
        if _threads() > 1:
            reply["recycle"] = True  # threads the code started would outlive the call
        reply["id"] = msg.get("id")
        send(reply)
        cleanup()


# ---------------------------------------------------------------- start-up


def _move_fds() -> tuple[int, int, int, int]:
    """Move the protocol pipes off fds 0/1; point 0 at /dev/null and 1/2 at capture files."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out_fd, err_fd = os.memfd_create("stdout"), os.memfd_create("stderr")
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    return proto_in, proto_out, out_fd, err_fd


def _streams() -> None:
    for attr, fd in (("stdout", 1), ("stderr", 2)):
        raw = io.FileIO(fd, "w", closefd=False)
        STATE[attr] = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace")
        setattr(sys, attr, STATE[attr])
        setattr(sys, f"__{attr}__", STATE[attr])


def main() -> None:
    cfg = json.loads(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    proto_in, proto_out, out_fd, err_fd = _move_fds()
    STATE.update(proto_in=proto_in, proto_out=proto_out, out_fd=out_fd, err_fd=err_fd)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead of killing us
    try:
        report = confine_self(cfg, here)
    except BaseException as exc:  # noqa: BLE001
        send({"op": "fatal", "output": f"worker start-up failed: {describe(exc)}\n{traceback.format_exc()}"})
        os._exit(1)
    send({"op": "confined", "confinement": report})  # before any function code exists in this process
    try:
        info = receive_functions(cfg)
    except BaseException as exc:  # noqa: BLE001
        send({"op": "fatal", "output": f"worker start-up failed: {describe(exc)}\n{traceback.format_exc()}"})
        os._exit(1)
    send({"op": "ready", **info})
    serve(os.fdopen(proto_in, "rb", buffering=1 << 16))


def confine_self(cfg: dict[str, Any], here: str) -> dict[str, Any]:
    """Confine this process for good (confine.py); its report, sent before any function code arrives."""
    spec = importlib.util.spec_from_file_location("_forgegit_confine", os.path.join(here, "confine.py"))
    assert spec is not None and spec.loader is not None
    confine = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = confine
    spec.loader.exec_module(confine)
    report: dict[str, Any] = confine.confine(cfg)
    STATE["seccomp"] = bool(report.get("seccomp"))
    return report


def receive_functions(cfg: dict[str, Any]) -> dict[str, Any]:
    """Once the host accepted the report: receive the function files and import them."""
    STATE["preloaded"] = set(sys.modules)
    STATE.update(
        pid=os.getpid(), workdir=cfg["workdir"],
        timeout=float(cfg["timeout"]), max_output=int(cfg["max_output"]), memory_mb=int(cfg["memory_mb"]),
        environ=dict(os.environ), finder=FunctionFinder(),
    )
    os.chdir(cfg["workdir"])
    os.register_at_fork(after_in_child=_in_child)
    _streams()
    sys.meta_path.insert(0, STATE["finder"])
    sys.dont_write_bytecode = True
    reader = os.fdopen(os.dup(STATE["proto_in"]), "rb")
    request = json.loads(reader.readline() or b"{}")
    reader.close()
    for fname, b64 in request.get("functions", {}).items():
        SOURCES[fname[:-3]] = base64.b64decode(b64)
    if request.get("preload", True):
        preload()
    _flush()
    return {"import_errors": {f"{k}.py": v for k, v in IMPORT_ERRORS.items()}}


if __name__ == "__main__":
    main()
