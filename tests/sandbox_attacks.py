"""Every attack of issue 11, run against a real `Sandbox` from a process that holds secrets.

    python tests/sandbox_attacks.py PLAN_JSON  ->  prints one JSON object: {attack: outcome text, ...}

tests/test_confinement.py starts this script through tests/as_user.py in each mode (root, an
unprivileged uid with and without user namespaces) and asserts that each attack failed. PLAN_JSON
names the paths to go after (a HOME with credentials, a repository with a token in .git/config, the
runner's files) and a loopback port that counts connections. The attacker is function code and the
agent's `python` code; this process plays forgegit: secrets in its environment, the sandbox's host.
"""
from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from typing import Any

from forgegit.sandbox import Limits, Sandbox

ATTACKS = {
    "read_host_memory": """
        out = []
        host = os.getppid()
        for p in [f'/proc/{host}/environ', f'/proc/{host}/mem', f'/proc/{host}/cmdline', '/proc/1/environ', '/proc/self/environ']:
            try:
                with open(p, 'rb') as f:
                    out.append(p + ' READ ' + f.read(4096).decode('latin-1'))
            except OSError as exc:
                out.append(p + ' ' + type(exc).__name__)
        return '\\n'.join(out)
    """,
    "ptrace_host": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        host = os.getppid()
        attach = libc.ptrace(16, host, 0, 0)  # PTRACE_ATTACH
        class iovec(ctypes.Structure):
            _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
        buf = ctypes.create_string_buffer(64)
        local, remote = iovec(ctypes.addressof(buf), 64), iovec(0x400000, 64)
        readv = libc.process_vm_readv(host, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        return f'attach={attach} readv={readv}'
    """,
    "read_files": """
        out = []
        for p in kw['secrets']:
            try:
                with open(p, 'rb') as f:
                    out.append(p + ' READ ' + f.read(4096).decode('latin-1'))
            except OSError as exc:
                out.append(p + ' ' + type(exc).__name__)
        for d in kw['dirs']:
            try:
                out.append(d + ' LISTED ' + ','.join(os.listdir(d)))
            except OSError as exc:
                out.append(d + ' ' + type(exc).__name__)
        return '\\n'.join(out)
    """,
    "write_files": """
        out = []
        for p in kw['targets']:
            try:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, 'w') as f:
                    f.write('#!/bin/sh\\necho pwned\\n')
                out.append(p + ' WROTE')
            except OSError as exc:
                out.append(p + ' ' + type(exc).__name__)
        return '\\n'.join(out)
    """,
    "persist": """
        out = []
        for d in ('/tmp', '/var/tmp', '/dev/shm', os.path.dirname(os.getcwd())):
            try:
                with open(os.path.join(d, 'forgegit-validation-notes.txt'), 'w') as f:
                    f.write(kw['question'])
                out.append(d + ' WROTE')
            except OSError as exc:
                out.append(d + ' ' + type(exc).__name__)
        open('kept.txt', 'w').write(kw['question'])
        return '\\n'.join(out)
    """,
    "recall": """
        found = []
        for d in ('/tmp', '/var/tmp', '/dev/shm', '.', os.path.dirname(os.getcwd())):
            try:
                found += [d + '/' + n for n in os.listdir(d) if n in ('kept.txt', 'forgegit-validation-notes.txt')]
            except OSError:
                pass
        return 'FOUND ' + ' '.join(found) if found else 'nothing'
    """,
    "network": """
        import socket
        out = []
        def attempt(label, f):
            try:
                f()
                out.append(label + ' CONNECTED')
            except OSError as exc:
                out.append(label + ' ' + type(exc).__name__)
        attempt('tcp', lambda: socket.create_connection(('127.0.0.1', kw['port']), timeout=2).close())
        attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', kw['port'])))
        attempt('unix', lambda: socket.socket(socket.AF_UNIX).connect(kw['unix']))
        attempt('abstract', lambda: socket.socket(socket.AF_UNIX).connect('\\0' + kw['abstract']))
        attempt('netlink', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
        return '\\n'.join(out)
    """,
    "daemon": """
        import subprocess
        out = []
        try:
            pid = os.fork()
            if pid == 0:
                os.setsid()
                import time
                time.sleep(600)
                os._exit(0)
            out.append(f'FORKED {pid}')
        except OSError as exc:
            out.append('fork ' + type(exc).__name__)
        try:
            subprocess.Popen(['sleep', '600'], start_new_session=True)
            out.append('SPAWNED')
        except OSError as exc:
            out.append('spawn ' + type(exc).__name__)
        try:
            os.execv(sys.executable, [sys.executable, '-c', 'pass'])
        except OSError as exc:
            out.append('exec ' + type(exc).__name__)
        return '\\n'.join(out)
    """,
    "unmount": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        out = []
        for target in kw['mounts']:
            r = libc.umount2(target.encode(), 2)  # MNT_DETACH
            out.append(f'umount {target} {"UNMOUNTED" if r == 0 else ctypes.get_errno()}')
        r = libc.mount(b'tmpfs', os.getcwd().encode(), b'tmpfs', 0, None)
        out.append(f'mount {"MOUNTED" if r == 0 else ctypes.get_errno()}')
        for flag in (0x10000000, 0x00020000, 0x40000000):  # NEWUSER, NEWNS, NEWNET
            r = libc.unshare(flag)
            out.append(f'unshare {flag:#x} {"UNSHARED" if r == 0 else ctypes.get_errno()}')
        return '\\n'.join(out)
    """,
    "signals": """
        import signal
        out = []
        for pid in (os.getppid(), kw['test_pid'], -1, 1):
            try:
                os.kill(pid, 0)
                out.append(f'{pid} SIGNALLED')
            except OSError as exc:
                out.append(f'{pid} {type(exc).__name__}')
        return '\\n'.join(out)
    """,
    "fill_disk": """
        chunk = b'x' * (1 << 20)
        written = 0
        try:
            for i in range(400):
                with open(f'fill-{i}.bin', 'wb') as f:
                    for _ in range(8):
                        f.write(chunk)
                        written += 1
        except OSError as exc:
            return f'stopped after {written} MB: {type(exc).__name__}'
        return f'WROTE {written} MB'
    """,
    "kernel_channels": """
        import ctypes, socket
        libc = ctypes.CDLL(None, use_errno=True)
        out = []
        def attempt(label, result):
            out.append(f"{label} {'OPENED' if result >= 0 else ctypes.get_errno()}")
        attempt('shmget', libc.shmget(0, 1 << 20, 0o1600))  # IPC_PRIVATE, IPC_CREAT|0600: survives the worker
        attempt('msgget', libc.msgget(0, 0o1600))
        attempt('semget', libc.semget(0, 1, 0o1600))
        attempt('memfd_create', libc.memfd_create(b'hoard', 0))  # memory RLIMIT_AS does not count
        attempt('inotify_init1', libc.inotify_init1(0))
        attempt('pdeathsig', libc.prctl(1, 0, 0, 0, 0))  # PR_SET_PDEATHSIG 0: outlive forgegit
        for kind in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
            try:
                socket.socketpair(socket.AF_UNIX, kind)
                out.append(f'socketpair {kind} OPENED')
            except OSError as exc:
                out.append(f'socketpair {kind} {type(exc).__name__}')
        a, b = socket.socketpair()
        try:
            a.sendto(b'x', kw['unix'])
            out.append('sendto OPENED')
        except OSError as exc:
            out.append('sendto ' + type(exc).__name__)
        return '\\n'.join(out)
    """,
    "locked_dir_fill": """
        os.mkdir('locked')
        chunk = b'x' * (1 << 20)
        written = 0
        try:
            for i in range(60):
                with open(f'locked/f{i}', 'wb') as f:
                    f.write(chunk)
                    written += 1
                if i == 0:
                    os.chmod('locked', 0o300)  # the host (same user) can no longer list it
            import time
            time.sleep(1)  # give the host's watch time to look
        except OSError as exc:
            return f'stopped after {written} MB: {type(exc).__name__}'
        return f'WROTE {written} MB'
    """,
    "os_thread": """
        import _thread, time
        _thread.start_new_thread(lambda: time.sleep(600), ())  # invisible to threading.active_count()
        return os.getpid()
    """,
    "after_thread": """
        return os.getpid()
    """,
    "threads_memory": """
        import threading
        hoard, errors = [], []
        def grab():
            try:
                for _ in range(8):
                    hoard.append(bytearray(32 * 1024 * 1024))
            except MemoryError:
                errors.append('MemoryError')
        ts = [threading.Thread(target=grab) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return f'held {len(hoard) * 32} MB, {len(errors)} MemoryError'
    """,
}


def source(name: str, body: str) -> str:
    code = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"import os\nimport sys\n\n\ndef {name}(**kw):\n{code}\n"


async def main(plan: dict[str, Any]) -> dict[str, Any]:
    files = {f"{name}.py": source(name, body).encode() for name, body in ATTACKS.items()}
    limits = Limits(timeout=15, memory_mb=256, disk_mb=32)
    async with Sandbox(files, limits, workers=1, protect=[plan["repo"]]) as sb:
        assert sb.isolation is not None
        out: dict[str, Any] = {"isolation": sb.isolation.to_json(), "confinement": sb.confinement}
        for name in ATTACKS:
            args = plan["args"].get(name, plan["args"]["network"] if name == "kernel_channels" else {})
            outcome = await sb.call(name, args)
            out[name] = f"{outcome.error or 'ok'}: {outcome.output}"
        # The agent's `python` tool is the other attacker: the same reads from a notebook cell.
        cell = source("attack", ATTACKS["read_files"]) + f"print(attack(**{plan['args']['read_files']!r}))"
        python = await sb.run_python(cell)
        out["python_read_files"] = f"{python.error or 'ok'}: {python.output}"
    return out


async def hold() -> None:
    """Print the worker's pid, then keep it busy until this process is killed (`hold` argument)."""
    files = {"pid.py": b"import os\n\n\ndef pid():\n    return os.getpid()\n",
             "sleep.py": b"import time\n\n\ndef sleep():\n    time.sleep(600)\n"}
    async with Sandbox(files, Limits(timeout=600), workers=1) as sb:
        print((await sb.call("pid", {})).output, flush=True)
        await sb.call("sleep", {})


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        asyncio.run(hold())
    else:
        print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
