"""Out-of-process execution of untrusted function code: a warm, asyncio pool of confined workers.

Function files are written by an LLM, so they never run in this process. Each worker
(`sandbox_worker.py`) is a separate Python process started with an allow-listed environment (no
secret), in its own session and private temp dir. Before it receives any function code it confines
itself (`confine.py`: namespaces where allowed, own uid as root, limits, Landlock, seccomp) and
reports what it reached; `isolation.py` judges that report, and the pool refuses to run below the
secrets-safe level unless `allow_unsafe` is set. Calls time out by killing the worker; the pool then
replaces it. Every failure becomes a `ToolOutcome(ok=False)`.
"""
from __future__ import annotations

import asyncio
import atexit
import base64
import json
import os
import shutil
import random
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine, Optional, Sequence

from .errors import ForgegitError
from .isolation import Isolation, SandboxRefused, protect_host, unconfined

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_worker.py")
WORKER_IDS = range(2**31 - 2**20, 2**31 - 1)  # started by root, each worker runs as its own unused uid/gid from here
DISK_POLL_S = 0.05  # how often the host measures a worker's temp dir where no tmpfs bounds it
DISK_SLACK = 256 * 1024 * 1024  # what others may write to the same filesystem during a watched call
START_TIMEOUT = 60.0  # seconds for a worker to start (plus the import budget of the functions)
ENV_COPY = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
ENV_FIXED = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUTF8": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}


@dataclass
class Limits:
    """Per-call limits of the sandbox; these defaults are also the settings' (config.Settings)."""

    timeout: float = 10.0  # seconds per call
    memory_mb: int = 512  # address space of a worker (RLIMIT_AS); one process, so this bounds it all
    max_output: int = 20000  # characters of return value / captured output
    disk_mb: int = 64  # what the worker's temp dir may hold (a tmpfs size, or watched by the host)


@dataclass
class ToolOutcome:
    """What one tool call produced: the text the agent sees, and an error kind when it failed."""

    ok: bool
    output: str
    error: Optional[str] = None  # "exception" | "timeout" | "memory" | "disk" | "crash" | "bad_arguments" | "unknown_function"
    duration: float = 0.0


class _DiskFull(Exception):
    """The worker's temp dir outgrew Limits.disk_mb."""


class _WorkerDied(Exception):
    """The worker closed its pipe or answered out of protocol."""


@dataclass(eq=False)
class _Worker:
    """One worker process, its temp dir and how many calls it has served."""

    proc: asyncio.subprocess.Process
    root: str
    info: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    seq: int = 0
    wid: Optional[int] = None

    async def exchange(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request and read its reply."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.seq += 1
        msg = {**msg, "id": self.seq}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        try:
            await self.proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            raise _WorkerDied(str(exc)) from exc
        reply = await self.read()
        if reply.get("id") != self.seq:
            raise _WorkerDied("the worker answered out of protocol")
        return reply

    async def read(self) -> dict[str, Any]:
        """One protocol message from the worker."""
        assert self.proc.stdout is not None
        try:
            line = await self.proc.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise _WorkerDied("the worker sent an oversized message") from exc
        if not line:
            raise _WorkerDied("the worker exited")
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError) as exc:  # code that wrote to the protocol pipe itself
            raise _WorkerDied("the worker sent a malformed message") from exc
        if not isinstance(reply, dict):
            raise _WorkerDied("the worker sent a malformed message")
        return reply

    def alive(self) -> bool:
        """False once the worker has exited or closed its pipe."""
        out = self.proc.stdout
        if self.proc.returncode is not None or out is None or out.at_eof():
            return False
        try:  # exited but not yet noticed by the event loop? (WNOWAIT: leave reaping to asyncio)
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def kill(self) -> None:
        """Kill the worker's process group (the worker alone, unless unconfined code forked)."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _live_groups.discard(self.proc.pid)

    async def stop(self, graceful: bool = False) -> None:
        """Stop the process and remove its temp dir (even when cancelled)."""
        try:
            if graceful and self.proc.returncode is None and self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                    await asyncio.wait_for(self.proc.wait(), 2.0)
                except (asyncio.TimeoutError, ConnectionError, OSError):
                    pass
            self.kill()
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except asyncio.TimeoutError:
            pass
        finally:
            self.kill()
            _remove_tree(self.root)
            if self.wid is not None:
                _ids_in_use.discard(self.wid)

    async def exit_description(self) -> str:
        """How the worker ended: 'exited with code 3' or 'was killed by signal SIGSEGV'."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), 2.0)
        except asyncio.TimeoutError:
            self.kill()
            return "stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"was killed by signal {name}"
        return f"exited with code {code}"


def _open_dir(name: str, dir_fd: Optional[int] = None) -> int:
    """A directory fd that never follows a symlink (the worker may swap a directory for one)."""
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _make_enterable(name: str, dir_fd: Optional[int] = None) -> bool:
    """chmod 0700 a directory the worker made unreadable (e.g. mkdir with mode 0300), and only a real
    directory: it is reached through an O_PATH descriptor that does not follow links."""
    try:
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _disk_usage(path: str, stop_above: int) -> int:
    """Bytes allocated under path, each entry counted as at least one 4 KiB block so that a flood of
    empty files (inodes) counts too; stops counting once past stop_above. Walks by descriptor and
    never follows a link; makes directories the worker locked readable again."""
    total = 0
    try:
        stack = [_open_dir(path)]
    except OSError:
        return 0
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += max(st.st_blocks * 512, 4096)
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            stack.append(_open_dir(entry.name, fd))
                        except PermissionError:
                            if _make_enterable(entry.name, fd):
                                try:
                                    stack.append(_open_dir(entry.name, fd))
                                except OSError:
                                    pass
                        except OSError:
                            pass
                    if total > stop_above:
                        break
        except OSError:
            pass
        finally:
            os.close(fd)
        if total > stop_above:
            for other in stack:
                os.close(other)
            break
    return total


def _remove_tree(path: str) -> None:
    """Remove a worker's temp dir, also where the worker made directories unreadable (never follows
    links, and never touches a directory outside path: the temp base itself is not ours to change)."""
    top = os.path.abspath(path)

    def unlock(function: object, failed: str, exc_info: object) -> None:
        for d in (os.path.dirname(failed), failed):
            d = os.path.abspath(d)
            if d == top or d.startswith(top + os.sep):
                _make_enterable(d)

    if os.path.isdir(top) and not os.path.islink(top):
        shutil.rmtree(top, onerror=unlock)
        shutil.rmtree(top, ignore_errors=True)


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _environment(workdir: str) -> dict[str, str]:
    """The worker's whole environment: an allow-list, nothing else from the host."""
    env = {k: os.environ[k] for k in ENV_COPY if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(ENV_FIXED)
    env.update(HOME=workdir, TMPDIR=workdir, TMP=workdir, TEMP=workdir, USER="sandbox", LOGNAME="sandbox")
    return env


_ids_in_use: set[int] = set()
_live_groups: set[int] = set()  # process groups of running workers, killed if forgegit exits without closing


@atexit.register
def _kill_leftover_workers() -> None:
    for pgid in list(_live_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def _worker_id() -> int:
    """An unused uid/gid for a new worker (unique within this process, random across processes)."""
    while True:
        wid = random.choice(WORKER_IDS)
        if wid not in _ids_in_use:
            _ids_in_use.add(wid)
            return wid


def _open_to_all(path: str) -> bool:
    """Whether any user may pass through every directory on path (needed once the worker drops root)."""
    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) + 1):
        try:
            if not os.stat("/".join(parts[:i]) or "/").st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _temp_base(dropping: bool) -> Optional[str]:
    """Where worker temp dirs go: the usual temp dir, or /tmp if a dropped worker could not reach it."""
    base = tempfile.gettempdir()
    if dropping and not _open_to_all(base):
        for alt in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(alt) and _open_to_all(alt):
                return alt
    return base


DIR_PREFIX = "forgegit-sandbox-"  # + the host's pid + "-": a killed host's dirs are recognised and removed
_swept: set[str] = set()


def _sweep(base: str) -> None:
    """Remove the temp dirs that killed forgegit processes left in base (once per base and process)."""
    if base in _swept:
        return
    _swept.add(base)
    try:
        entries = os.listdir(base)
    except OSError:
        return
    for name in entries:
        pid = name[len(DIR_PREFIX):].split("-", 1)[0]
        if not name.startswith(DIR_PREFIX) or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its forgegit is still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's forgegit
        _remove_tree(os.path.join(base, name))


def _make_dirs(wid: Optional[int]) -> tuple[str, str, str]:
    """(root, workdir, staging): a private temp dir, the worker's own work dir inside it, and a mount staging dir."""
    base = _temp_base(wid is not None)
    if base:
        _sweep(base)
    root = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=base)
    workdir, staging = os.path.join(root, "work"), os.path.join(root, "mnt")
    os.mkdir(workdir, 0o700)
    os.mkdir(staging, 0o700)
    if wid is not None:
        os.chmod(root, 0o711)  # the worker user may pass through to its work dir, not list the root
        os.chown(workdir, wid, wid)
    return root, workdir, staging


def _python_flags() -> list[str]:
    """Interpreter flags: no user site-packages, no bytecode, no script dir on sys.path."""
    return ["-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])


class Sandbox:
    """A pool of warm worker processes that run the function files; every call returns a ToolOutcome.

    Workers confine themselves, then import every function file (a file that fails to import only
    fails its own calls) and serve one call at a time; calls queue while all are busy. After each call
    the worker empties its work dir; module globals persist until the worker is recycled (after
    `recycle_after` calls, a memory error, leftover threads, a timeout, the disk quota or a crash).
    A pool lives for one evaluation, so nothing carries from one task set (split) to another.
    Output: a str return value as-is, anything else as JSON (repr for the rest), then
    "\n\nstdout:\n" and what it printed, if anything; each part cut to `max_output` characters.
    """

    def __init__(
        self,
        functions: dict[str, bytes],
        limits: Optional[Limits] = None,
        *,
        workers: int = 2,
        recycle_after: int = 500,
        allow_unsafe: bool = False,
        protect: Sequence[str] = (),
    ) -> None:
        """protect: paths the worker must never see even if Python lives beside them (the repository);
        the current directory and HOME are always protected. allow_unsafe: run below secrets-safe."""
        self.functions = {os.path.basename(k): bytes(v) for k, v in functions.items() if k.endswith(".py")}
        self.limits = limits or Limits()
        self.size = max(1, int(workers))
        self.recycle_after = max(1, int(recycle_after))
        self.allow_unsafe = allow_unsafe
        self.protect = [os.getcwd(), os.path.expanduser("~"), *map(str, protect)]
        self.isolation: Optional[Isolation] = None  # what the first worker reached
        self.confinement: dict[str, Any] = {}  # the first worker's own report (see confine.py)
        self.import_errors: dict[str, str] = {}  # {file name: error} found by the first worker's preload
        self._preload = True
        self._drop = True  # tests turn these off to exercise the fallbacks
        self._namespaces = True
        self._idle: list[_Worker] = []
        self._live = 0  # workers running or being started
        self._cond: Optional[asyncio.Condition] = None
        self._workers: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: Optional[asyncio.Future[None]] = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the pool's workers (idempotent, safe to await concurrently); ForgegitError if none can start."""
        if self._closed:
            raise ForgegitError("the sandbox is closed")
        protect_host()
        if self._cond is None:
            self._cond = asyncio.Condition()
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._starting)
        except ForgegitError:
            self._starting = None  # let a later call try again
            raise

    async def _start(self) -> None:
        assert self._cond is not None
        self._live = self.size
        results = await asyncio.gather(*(self._spawn() for _ in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        async with self._cond:
            self._idle.extend(r for r in results if isinstance(r, _Worker))
            self._live -= len(errors)
            self._cond.notify_all()
        refused = [e for e in errors if isinstance(e, SandboxRefused)]
        if refused:
            raise refused[0]
        if len(errors) == self.size:
            raise ForgegitError(f"the sandbox could not start: {errors[0]}")

    async def close(self) -> None:
        """Stop every worker and remove their temp dirs."""
        self._closed = True
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._tasks:  # replacements in flight: let them finish (they stop what they start), then cancel
            _, pending = await asyncio.wait(list(self._tasks), timeout=10.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        workers = list(self._workers)
        self._idle.clear()
        await asyncio.gather(*(w.stop(graceful=True) for w in workers), return_exceptions=True)
        self._workers.clear()

    async def __aenter__(self) -> "Sandbox":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the API

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call functions/<name>.py's <name>(**arguments) in a worker."""
        if f"{name}.py" not in self.functions:
            known = ", ".join(sorted(f[:-3] for f in self.functions)) or "none"
            return ToolOutcome(False, f"there is no function {name!r} (available: {known})", "unknown_function")
        if not isinstance(arguments, dict) or not all(isinstance(k, str) for k in arguments):
            return ToolOutcome(False, f"bad arguments for {name}: expected an object of named arguments", "bad_arguments")
        try:
            json.dumps(arguments)
        except (TypeError, ValueError) as exc:
            return ToolOutcome(False, f"bad arguments for {name}: {exc}", "bad_arguments")
        return await self._request({"op": "call", "name": name, "arguments": arguments}, f"{name}.py")

    async def run_python(self, code: str) -> ToolOutcome:
        """Run a notebook-like cell with every function importable and pre-bound; shows a final expression."""
        return await self._request({"op": "python", "code": str(code)}, "the python code")

    async def check(self, fname: str) -> Optional[str]:
        """Why function file fname cannot be imported or lacks its function, or None when it is fine."""
        if fname not in self.functions:
            return f"{fname}: no such function file"
        outcome = await self._request({"op": "check", "name": fname[:-3]}, f"importing {fname}")
        if outcome.ok:
            return None
        if outcome.error in ("timeout", "crash", "memory"):
            return f"{fname}: {outcome.output}"
        return outcome.output

    # ------------------------------------------------------------ the pool

    async def _request(self, msg: dict[str, Any], label: str) -> ToolOutcome:
        """Run one request on an idle worker, turning every failure into a ToolOutcome."""
        try:
            await self.start()
            worker = await self._acquire()
        except SandboxRefused as exc:
            return ToolOutcome(False, str(exc), "refused")
        except ForgegitError as exc:
            return ToolOutcome(False, str(exc), "crash")
        t0 = time.monotonic()
        try:
            reply = await asyncio.wait_for(self._watched(worker, msg), self.limits.timeout)
        except _DiskFull:
            self._retire(worker)
            return ToolOutcome(
                False, f"disk: {label} wrote more than {self.limits.disk_mb} MB to its temp dir and was stopped",
                "disk", time.monotonic() - t0,
            )
        except asyncio.TimeoutError:
            self._retire(worker)
            return ToolOutcome(
                False, f"timeout: {label} did not finish within {self.limits.timeout:g} s and was stopped",
                "timeout", time.monotonic() - t0,
            )
        except _WorkerDied as exc:
            how = await worker.exit_description()
            self._retire(worker)
            return ToolOutcome(False, f"crash: the worker running {label} {how} ({exc})", "crash", time.monotonic() - t0)
        except BaseException:
            self._retire(worker)  # cancelled mid-call: the worker's state is unknown
            raise
        duration = time.monotonic() - t0
        worker.calls += 1
        if reply.get("recycle") or worker.calls >= self.recycle_after:
            self._retire(worker)
        else:
            await self._release(worker)
        ok = bool(reply.get("ok"))
        output = str(reply.get("output", ""))[: self.limits.max_output + 200]
        return ToolOutcome(ok, output, None if ok else str(reply.get("error") or "exception"), duration)

    async def _watched(self, worker: _Worker, msg: dict[str, Any]) -> dict[str, Any]:
        """worker.exchange(msg); where no tmpfs bounds the worker's temp dir, poll its size meanwhile."""
        if worker.info.get("confinement", {}).get("disk_quota") == "tmpfs":
            return await worker.exchange(msg)
        call = asyncio.ensure_future(worker.exchange(msg))
        limit = self.limits.disk_mb * 1024 * 1024
        free_before = _free_bytes(worker.root)
        try:
            while True:
                done, _ = await asyncio.wait([call], timeout=DISK_POLL_S)
                if _disk_usage(worker.root, limit) > limit:
                    raise _DiskFull()  # also a call that finished between two looks
                if done:
                    return call.result()
                # Files the worker deleted but keeps open are invisible to the walk: a backstop on the
                # filesystem's free space (with room for other writers on the same disk).
                if free_before - _free_bytes(worker.root) > limit + max(limit, DISK_SLACK):
                    raise _DiskFull()
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)

    async def _acquire(self) -> _Worker:
        """An idle worker; starts one if the pool is short, else waits for one."""
        assert self._cond is not None
        async with self._cond:
            while True:
                if self._closed:
                    raise ForgegitError("the sandbox is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._retire(worker)  # died while idle (e.g. killed its own supervisor)
                if self._live < self.size:
                    self._live += 1
                    break
                await self._cond.wait()
        try:
            return await self._spawn()
        except BaseException:
            await self._lost()
            raise

    async def _release(self, worker: _Worker) -> None:
        assert self._cond is not None
        async with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    async def _lost(self) -> None:
        """A worker slot became free (its worker died or failed to start)."""
        assert self._cond is not None
        async with self._cond:
            self._live -= 1
            self._cond.notify()

    def _retire(self, worker: _Worker) -> None:
        """Kill a worker now; its slot is refilled in the background."""
        worker.kill()
        self._workers.discard(worker)
        if self._closed:
            _remove_tree(worker.root)
            return
        self._background(self._replace(worker))

    async def _replace(self, worker: _Worker) -> None:
        await worker.stop()
        if self._closed:
            return
        try:
            fresh = await self._spawn()
        except (ForgegitError, OSError):
            await self._lost()
            return
        if self._closed:
            await fresh.stop()
            return
        await self._release(fresh)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self) -> _Worker:
        """Start a worker; if preloading the functions kills it, retry without preloading."""
        try:
            return await self._start_worker(self._preload)
        except SandboxRefused:
            raise
        except ForgegitError:
            if not self._preload or not self.functions:
                raise
        self._preload = False  # a function file crashes or hangs at import: import lazily per call
        return await self._start_worker(False)

    async def _start_worker(self, preload: bool) -> _Worker:
        """Start one worker process and wait until it has imported the functions."""
        wid = _worker_id() if os.geteuid() == 0 and self._drop else None
        root, workdir, staging = _make_dirs(wid)
        cfg = {
            "uid": wid, "namespaces": self._namespaces, "protected": self.protect, "host_pid": os.getpid(),
            "workdir": workdir, "staging": staging,
            "timeout": self.limits.timeout, "memory_mb": self.limits.memory_mb,
            "max_output": self.limits.max_output, "disk_mb": self.limits.disk_mb,
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *_python_flags(), WORKER_SCRIPT, json.dumps(cfg),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                cwd=workdir, env=_environment(workdir), start_new_session=True, close_fds=True,
                limit=max(1 << 24, 8 * self.limits.max_output),
            )
        except OSError as exc:
            _remove_tree(root)
            _ids_in_use.discard(wid or -1)
            raise ForgegitError(f"cannot start a sandbox worker: {exc}") from exc
        worker = _Worker(proc, root, wid=wid)
        self._workers.add(worker)
        _live_groups.add(proc.pid)
        try:
            await asyncio.wait_for(self._handshake(worker, preload), START_TIMEOUT + self.limits.timeout * len(self.functions))
        except SandboxRefused:
            self._workers.discard(worker)
            await worker.stop()
            raise
        except (asyncio.TimeoutError, _WorkerDied, ForgegitError) as exc:
            how = await worker.exit_description() if isinstance(exc, _WorkerDied) else "timed out starting"
            self._workers.discard(worker)
            await worker.stop()
            detail = exc.args[0] if isinstance(exc, ForgegitError) else how
            raise ForgegitError(f"a sandbox worker failed to start: {detail}") from exc
        except BaseException:
            self._workers.discard(worker)
            await worker.stop()
            raise
        return worker

    async def _handshake(self, worker: _Worker, preload: bool) -> None:
        """Two phases: the worker confines itself and reports, and only a report at the required level
        gets the function sources (so no function code ever runs in a worker forgegit would refuse,
        and none runs before the report, which it could otherwise forge); then wait for 'ready'."""
        assert worker.proc.stdin is not None
        confined = await self._message(worker, "confined")
        report = confined.get("confinement")
        isolation = Isolation.from_report(report) if isinstance(report, dict) else unconfined("the worker sent no confinement report")
        if not isolation.safe and not self.allow_unsafe:
            raise SandboxRefused(isolation.refusal())
        files = {k: base64.b64encode(v).decode() for k, v in self.functions.items()}
        worker.proc.stdin.write((json.dumps({"functions": files, "preload": preload}) + "\n").encode())
        try:
            await worker.proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            raise _WorkerDied(str(exc)) from exc
        info = await self._message(worker, "ready")
        worker.info = {**info, "confinement": report}
        if self.isolation is None:
            self.isolation, self.confinement = isolation, dict(report or {})
        self.import_errors = dict(info.get("import_errors") or {})

    @staticmethod
    async def _message(worker: _Worker, op: str) -> dict[str, Any]:
        """The worker's next start-up message, which must be op."""
        info = await worker.read()
        if info.get("op") == "fatal":
            raise ForgegitError(str(info.get("output", "")).splitlines()[0])
        if info.get("op") != op:
            raise _WorkerDied("the worker sent an unexpected message")
        return info


async def probe(limits: Optional[Limits] = None, *, allow_unsafe: bool = False, protect: Sequence[str] = ()) -> Isolation:
    """The isolation level a worker reaches on this machine (one worker, no function code).
    Raises SandboxRefused below secrets-safe unless allow_unsafe."""
    sandbox = Sandbox({}, limits, workers=1, allow_unsafe=allow_unsafe, protect=protect)
    try:
        await sandbox.start()
    finally:
        await sandbox.close()
    assert sandbox.isolation is not None
    return sandbox.isolation


async def check_imports(files: dict[str, bytes], limits: Optional[Limits] = None, *,
                        allow_unsafe: bool = False) -> dict[str, str]:
    """Import each function file in a fresh sandboxed worker; {file name: error} for the bad ones."""
    errors: dict[str, str] = {}
    names = {k: os.path.basename(k) for k in files if k.endswith(".py")}
    for key in files:
        if key not in names:
            errors[key] = f"{key}: a function file must end in .py"
    if not names:
        return errors
    sandbox = Sandbox({names[k]: files[k] for k in names}, limits, workers=1, allow_unsafe=allow_unsafe)
    sandbox._preload = False  # import file by file, so a crash or hang is blamed on the right file
    try:
        await sandbox.start()
        for key, fname in sorted(names.items()):
            problem = await sandbox.check(fname)
            if problem:
                errors[key] = problem
    except ForgegitError as exc:
        for key in names:
            errors.setdefault(key, f"{names[key]}: {exc}")
    finally:
        await sandbox.close()
    return errors
