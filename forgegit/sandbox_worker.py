"""Sandbox worker: isolates itself, then runs untrusted function code on request (stdlib only).

Started by `forgegit.sandbox` as `python -s -B [-P] sandbox_worker.py CONFIG_JSON`; never imported by the host.
Protocol: one JSON object per line on the worker's original stdin/stdout, which are moved to private
fds at start-up; fds 1 and 2 then point at in-memory capture files, so user code printing (even from C
or a subprocess) cannot corrupt the protocol.

Process layout: this process isolates itself (namespaces), then forks. The parent stays behind as a
tiny supervisor that only waits (so `os.getppid()` in user code is never the host); the child drops
privileges and sets limits. With a new PID namespace that child is the namespace's init: it forks once
more and only reaps, while its child serves. When the init dies the kernel kills every process in the
namespace; after each call the server kills whatever the code left behind (`kill(-1)`).
"""
from __future__ import annotations

import ast
import base64
import builtins
import ctypes
import importlib.abc
import importlib.util
import inspect
import io
import json
import linecache
import os
import resource
import shutil
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any, BinaryIO, Optional

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
FILE_SIZE_LIMIT = 64 * 1024 * 1024  # bytes one file (and captured stdout/stderr) may reach
PYTHON_FILE = "<python>"  # file name of code run by the `python` tool

_libc = ctypes.CDLL(None, use_errno=True)

# State of the serving process.
SOURCES: dict[str, bytes] = {}  # module name -> source
IMPORT_ERRORS: dict[str, str] = {}  # module name -> why it cannot be imported
STATE: dict[str, Any] = {}


# ---------------------------------------------------------------- isolation (runs as the start-up user)


def _unshare(flags: int) -> bool:
    """unshare(2) through libc (Python 3.11 has no os.unshare); True when it worked."""
    return flags == 0 or _libc.unshare(ctypes.c_int(flags)) == 0


def _mount(src: Optional[str], target: str, fstype: Optional[str], flags: int, data: Optional[str] = None) -> None:
    """mount(2) through libc; raises OSError on failure."""
    def enc(s: Optional[str]) -> Optional[bytes]:
        return s.encode() if s is not None else None

    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def isolate(cfg: dict[str, Any]) -> int:
    """Enter new namespaces, trying the strongest set first; returns the flags that worked."""
    root = os.geteuid() == 0
    full = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
    if not cfg.get("namespaces", True):
        return 0
    if root:
        attempts = [full, CLONE_NEWNET | CLONE_NEWPID, CLONE_NEWNET, 0]
    else:
        user = CLONE_NEWUSER
        attempts = [user | full, user | CLONE_NEWNET | CLONE_NEWPID, user | CLONE_NEWNET, 0]
    uid, gid = os.getuid(), os.getgid()
    for flags in attempts:
        if _unshare(flags):
            if flags & CLONE_NEWUSER:
                try:  # keep our own uid/gid visible inside the user namespace
                    _write("/proc/self/setgroups", "deny")
                    _write("/proc/self/uid_map", f"{uid} {uid} 1")
                    _write("/proc/self/gid_map", f"{gid} {gid} 1")
                except OSError:
                    pass
            return flags
    return 0


def _traversable(path: str, uid: int, gid: int) -> Optional[str]:
    """The first directory on path that uid/gid cannot enter, or None if all can be."""
    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(d)
        except OSError:
            return None
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return d
    return None


def _under(path: str, top: str) -> bool:
    """path is top or inside it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def _python_paths() -> set[str]:
    """Directories the worker's Python needs to stay visible (both as named and resolved)."""
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    paths |= {p for p in sys.path if p}
    return {q for p in paths for q in (os.path.abspath(p), os.path.realpath(p)) if os.path.isdir(q)}


def covers(cfg: dict[str, Any], uid: int, gid: int, dropping: bool) -> dict[str, list[str]]:
    """{directory to cover with an empty tmpfs: the Python dirs inside it to keep visible}."""
    needed = _python_paths()
    private = [os.path.dirname(cfg["workdir"])]
    tops: set[str] = set()
    if dropping:  # dirs the worker user cannot enter (e.g. /root) but Python lives in
        tops |= {b for p in needed if (b := _traversable(p, uid, gid)) and b != p and b != "/"}
    for h in cfg.get("hide", []):  # the host's HOME and working dir (the repo, its answers)
        h = os.path.realpath(h)
        if os.path.isdir(h) and h != "/" and not any(_under(h, p) or _under(q, h) for p in needed for q in private):
            tops.add(h)
    tops = {t for t in tops if not any(t != u and _under(t, u) for u in tops)}
    plan: dict[str, list[str]] = {}
    for top in sorted(tops):
        inside = [p for p in needed if p != top and _under(p, top)]
        plan[top] = sorted(p for p in inside if not any(p != q and _under(p, q) for q in inside))
    return plan


def hide_dirs(cfg: dict[str, Any], uid: int, gid: int, dropping: bool) -> list[str]:
    """In our private mount namespace, cover directories with an empty tmpfs, keeping the Python
    installation inside them visible at the same path (bind-mounted aside, then moved back)."""
    done: list[str] = []
    for n, (top, keep) in enumerate(covers(cfg, uid, gid, dropping).items()):
        staged = []
        for i, p in enumerate(keep):
            s = os.path.join(cfg["staging"], f"{n}-{i}")
            os.mkdir(s)
            _mount(p, s, None, MS_BIND | MS_REC)
            staged.append((p, s))
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for p, s in staged:
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(s, p, None, MS_MOVE)
        done.append(f"hid {top}" + (f" (kept {', '.join(keep)})" if keep else ""))
    return done


def private_mounts(cfg: dict[str, Any], uid: int, gid: int, pid_ns: bool, dropping: bool) -> list[str]:
    """Mounts only this worker sees: its own /proc; /root, the host's HOME and cwd hidden (best effort, noted)."""
    notes: list[str] = []
    try:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        return [f"mounts left alone: {exc}"]
    if pid_ns:
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError as exc:
            notes.append(f"/proc not remounted: {exc}")
    try:
        notes += hide_dirs(cfg, uid, gid, dropping)
    except OSError as exc:
        notes.append(f"directories not hidden: {exc}")
    return notes


def supervise(child: int, close_fds: list[int], reraise_codes: bool = False) -> None:
    """A supervisor: hold no pipes, reap children until `child` ends, then end the way it did.

    A PID namespace's init cannot kill itself with a signal, so it reports death by signal N as exit
    code 128+N; the outer supervisor (reraise_codes) turns that back into the signal for the host.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == child:
            break
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    if reraise_codes and code > 128 and code - 128 in signal.valid_signals():
        sig = code - 128
    if sig:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(code)


def set_limits(cfg: dict[str, Any], dropping: bool) -> None:
    """Resource limits for the serving process and everything it starts."""
    mem = int(cfg["memory_mb"]) * 1024 * 1024
    nproc = int(cfg["max_processes"])
    if not dropping and os.geteuid() != 0:
        nproc += _tasks_of(os.getuid())  # the limit counts all of this user's processes
    for res, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_NOFILE, 1024),
        (resource.RLIMIT_AS, mem),
    ):
        _lower_limit(res, value)


def _lower_limit(res: int, value: int) -> None:
    soft, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(res, (value, value))
    except (ValueError, OSError):
        pass


def _tasks_of(uid: int) -> int:
    """How many processes/threads uid owns now (what RLIMIT_NPROC counts)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}")
                if st.st_uid == uid:
                    n += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                pass
    return n


def drop_privileges(uid: int, gid: int) -> None:
    """Become the unprivileged worker user (root only); irreversible."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError("could not drop privileges")


def after_drop(supervisor: int, pid_ns: bool) -> None:
    """Die with the supervisor; never regain privileges through set-uid programs."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if not pid_ns and os.getppid() != supervisor:
        os._exit(1)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# ---------------------------------------------------------------- loading function files


class FunctionFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports function files from memory: `import digit_sum` gives functions/digit_sum.py."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if path is None and fullname in SOURCES:
            return importlib.util.spec_from_loader(fullname, self, origin=f"{fullname}.py")
        return None

    def create_module(self, spec: Any) -> None:
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


def _alarm(signum: int, frame: Any) -> None:
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
    """After a call: kill processes the code left behind, empty the work dir, restore the process."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    if STATE["pid_ns"]:
        try:
            os.kill(-1, signal.SIGKILL)  # everything in our namespace but us and its init
        except OSError:
            pass
    else:
        _kill_group_members()
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
    """Without a PID namespace: kill other processes in our process group (not us, not the supervisor)."""
    me, pgid = os.getpid(), os.getpgid(0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, STATE["supervisor"]):
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
        if threading.active_count() > 1:
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
    STATE["preloaded"] = set(sys.modules)
    proto_in, proto_out, out_fd, err_fd = _move_fds()
    STATE.update(proto_in=proto_in, proto_out=proto_out, out_fd=out_fd, err_fd=err_fd)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead of killing us
    try:
        info = start(cfg)
    except BaseException as exc:  # noqa: BLE001
        guard_child()
        send({"op": "fatal", "output": f"worker start-up failed: {describe(exc)}\n{traceback.format_exc()}"})
        os._exit(1)
    send({"op": "ready", **info})
    serve(os.fdopen(proto_in, "rb", buffering=1 << 16))


def start(cfg: dict[str, Any]) -> dict[str, Any]:
    """Isolate, fork the supervisor, drop privileges, set limits, receive and import the functions."""
    flags = isolate(cfg)
    supervisor = os.getpid()
    child = os.fork()
    fds = [STATE["proto_in"], STATE["proto_out"], STATE["out_fd"], STATE["err_fd"]]
    if child:
        supervise(child, fds, reraise_codes=True)
    pid_ns = bool(flags & CLONE_NEWPID)
    dropping = os.geteuid() == 0 and bool(cfg.get("drop", True))
    uid, gid = (int(cfg["uid"]), int(cfg["gid"])) if dropping else (os.getuid(), os.getgid())
    notes: list[str] = []
    if flags & CLONE_NEWNS:
        notes += private_mounts(cfg, uid, gid, pid_ns, dropping)
    set_limits(cfg, dropping)
    if dropping:
        drop_privileges(uid, gid)
    after_drop(supervisor, pid_ns)
    if pid_ns:  # stay behind as the namespace's init (it reaps orphans); serve from a normal process
        server = os.fork()
        if server:
            supervise(server, fds)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    STATE.update(
        pid=os.getpid(), pid_ns=pid_ns, supervisor=supervisor, workdir=cfg["workdir"],
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
    return {
        "network_isolated": bool(flags & CLONE_NEWNET),
        "pid_isolated": pid_ns,
        "privileges_dropped": dropping,
        "uid": os.getuid(),
        "import_errors": {f"{k}.py": v for k, v in IMPORT_ERRORS.items()},
        "notes": notes,
    }


if __name__ == "__main__":
    main()
