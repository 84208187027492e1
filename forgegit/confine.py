"""How a sandbox worker confines itself before it runs untrusted code (worker side, stdlib only).

`confine(cfg)` runs in the freshly started worker process, single-threaded, in this order:

1. namespaces, where the kernel allows them: as root a mount and network namespace; as a user a
   user namespace with mount and network namespaces (ubuntu-24.04 refuses or cripples these: then
   the worker goes on without them);
2. mounts, in its private mount namespace: a size-limited tmpfs as its work dir (the disk quota) and,
   as root, the Python installation made reachable for the worker's own uid;
3. resource limits (memory, file size, open files, no core files);
4. identity: as root, the worker's own unused uid/gid; in a user namespace every capability dropped;
   die with the host (parent-death signal);
5. Landlock (`landlock.py`): read-only access to the Python installation and system libraries, the
   work dir writable, /dev/null; nothing else, no TCP, no signals or abstract sockets outside;
6. seccomp (`syscall_filter.py`): no other process, no new process, no socket, no mount.

Every step reports what it did, and what it could not do, in the returned dict; the host
(`isolation.py`) turns that into the level the sandbox reached and refuses to run below secrets-safe.
This is the design of OpenAI's Codex CLI on Linux (Landlock + seccomp, unprivileged), with
namespaces added where they exist, as bubblewrap-based sandboxes use them.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from types import ModuleType
from typing import Any, Optional

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x08000000, 0x10000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
CAP_LAST = 63  # capability numbers to drop from the bounding set (the kernel ignores unknown ones)
SYSTEM_READ = (  # read-only, beside the Python installation: what the dynamic loader and libc need
    "/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32", "/usr/local/lib",
    "/usr/share/zoneinfo", "/etc/localtime", "/etc/ld.so.cache", "/usr/lib/locale",
    "/sys/devices/system/cpu",
)
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

_libc = ctypes.CDLL(None, use_errno=True)


def load_sibling(name: str) -> ModuleType:
    """Import forgegit/<name>.py by path (the worker runs outside the package, with a cleaned sys.path)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_forgegit_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _unshare(flags: int) -> bool:
    return int(_libc.unshare(ctypes.c_int(flags))) == 0


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


def _enter(flags: int, uid: int, gid: int) -> bool:
    """unshare(flags) and, for a user namespace, keep our own uid/gid inside it; True when all worked."""
    if not _unshare(flags):
        return False
    if flags & CLONE_NEWUSER:
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            return False
        return os.getuid() == uid and os.getgid() == gid
    return True


def _works_in_child(flags: int, uid: int, gid: int) -> bool:
    """Try flags in a throw-away child first: a user namespace that is made and then crippled (as
    ubuntu-24.04's AppArmor may do) cannot be left again, so the worker must not enter it."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _enter(flags, uid, gid) else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def enter_namespaces(root: bool, allowed: bool) -> int:
    """The strongest set of new namespaces the kernel grants (0 when none)."""
    if not allowed:
        return 0
    own = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
    attempts = [own, CLONE_NEWNET | CLONE_NEWIPC, CLONE_NEWNET] if root else [
        CLONE_NEWUSER | own, CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC, CLONE_NEWUSER | CLONE_NEWNET]
    uid, gid = os.getuid(), os.getgid()
    for flags in attempts:
        if flags & CLONE_NEWUSER and not _works_in_child(flags, uid, gid):
            continue
        if _enter(flags, uid, gid):
            return flags
    return 0


def traversable(path: str, uid: int, gid: int) -> Optional[str]:
    """The first directory on path that uid/gid cannot enter, or None if every one can be."""
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
    return path == top or path.startswith(top.rstrip("/") + "/")


def python_paths(protected: list[str]) -> list[str]:
    """What of the Python installation the worker may read: the standard library and the
    site-packages directories, and other sys.path entries; never a prefix's root (a venv's pip.conf,
    its src/ of editable installs), and never an entry that is or holds a protected path (the
    repository, HOME, forgegit's state). An entry inside a protected path is allowed only when it is
    one of the installation's own library directories (a venv inside the repository)."""
    import sysconfig

    paths = sysconfig.get_paths()
    library = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    guarded = {os.path.realpath(p) for p in protected if p}
    out: set[str] = set()
    for entry in {*library, *(p for p in sys.path if p)}:
        for q in {os.path.abspath(entry), os.path.realpath(entry)}:
            if not os.path.exists(q) or q == "/" or any(_under(g, q) for g in guarded):
                continue  # holds something protected
            if any(_under(q, g) for g in guarded) and entry not in library:
                continue  # inside something protected, and not the installation's own
            out.add(q)
    return sorted(out)


def reach_python(python: list[str], staging: str, uid: int, gid: int) -> list[str]:
    """Root only, in a private mount namespace: cover each directory the worker's uid cannot enter (e.g.
    /root, holding a pyenv Python) with an empty tmpfs, the Python directories inside it kept visible at
    the same path (bind-mounted aside, then moved back). Returns what it covered."""
    tops = {b for p in python if (b := traversable(p, uid, gid)) and b != p and b != "/"}
    tops = {t for t in tops if not any(t != u and _under(t, u) for u in tops)}
    covered = []
    for n, top in enumerate(sorted(tops)):
        inside = [p for p in python if p != top and _under(p, top)]
        keep = sorted(p for p in inside if not any(p != q and _under(p, q) for q in inside))
        staged = []
        for i, p in enumerate(keep):
            s = os.path.join(staging, f"{n}-{i}")
            os.mkdir(s)
            _mount(p, s, None, MS_BIND | MS_REC)
            staged.append((p, s))
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for p, s in staged:
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(s, p, None, MS_MOVE)
        covered.append(top)
    return covered


def set_limits(cfg: dict[str, Any]) -> None:
    """Resource limits of the worker (one process: seccomp refuses new ones, so these bound it all)."""
    for res, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, int(cfg["disk_mb"]) * 1024 * 1024),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_AS, int(cfg["memory_mb"]) * 1024 * 1024),
    ):
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_bounding_set() -> None:
    """No capability can ever come back (needs CAP_SETPCAP: done before giving up root)."""
    for cap in range(CAP_LAST + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last known one; EPERM without CAP_SETPCAP


def drop_capabilities() -> bool:
    """Empty the effective, permitted and inheritable sets; True when none is left."""
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    _libc.capset(ctypes.byref(header), data)
    return _libc.capget(ctypes.byref(header), data) == 0 and not any(d.effective or d.permitted for d in data)


def become(uid: int, gid: int) -> None:
    """Root only: become the worker's own unprivileged uid/gid; irreversible."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise RuntimeError("could not drop privileges")


def die_with(host: int) -> bool:
    """SIGKILL this worker when the host exits; False if the host is already gone."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == host


def confine(cfg: dict[str, Any]) -> dict[str, Any]:
    """Confine this process for good (see the module docstring); what was reached, step by step."""
    report: dict[str, Any] = {"platform": sys.platform, "problems": []}
    problems: list[str] = report["problems"]
    root = os.geteuid() == 0
    landlock, syscall_filter = load_sibling("landlock"), load_sibling("syscall_filter")
    try:  # imported now: it runs `ldconfig` at import, which Landlock would stop
        import pyseccomp  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as exc:
        problems.append(f"seccomp: the pyseccomp binding or libseccomp is missing ({exc})")
    workdir, staging = cfg["workdir"], cfg["staging"]
    python = python_paths(cfg.get("protected", []))
    wid = int(cfg["uid"]) if root and cfg.get("uid") is not None else -1
    dropping = wid >= 0

    flags = enter_namespaces(root, bool(cfg.get("namespaces", True)))
    report["user_namespace"] = bool(flags & CLONE_NEWUSER)
    report["network_namespace"] = bool(flags & CLONE_NEWNET)
    report["ipc_namespace"] = bool(flags & CLONE_NEWIPC)
    report["disk_quota"] = "watched"
    if flags & CLONE_NEWNS:
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            owner = f",uid={wid},gid={wid}" if dropping else ""
            _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={int(cfg['disk_mb'])}m{owner}")
            report["disk_quota"] = "tmpfs"
            if dropping:
                report["covered"] = reach_python(python, staging, wid, wid)
        except OSError as exc:
            problems.append(f"mounts: {exc}")
    set_limits(cfg)

    drop_bounding_set()
    report["own_uid"] = False
    if dropping and not any(traversable(p, wid, wid) for p in python):
        become(wid, wid)  # also empties every capability set
        report["own_uid"] = True
    elif dropping:  # stay uid 0, without capabilities: the work dir must then be root's
        os.chown(workdir, 0, 0)
        problems.append("own uid: the Python installation is not reachable by an unprivileged uid here")
    report["capabilities"] = "none" if drop_capabilities() else "kept"
    if not die_with(int(cfg["host_pid"])):
        os._exit(1)  # the host died while we started
    report["parent_death_signal"] = True

    try:
        report["landlock"] = landlock.Ruleset(
            read=python + list(SYSTEM_READ) + ["/proc/self/task"], write=[workdir], devices=list(DEVICES),
        ).enforce()
    except OSError as exc:
        report["landlock"] = {"abi": landlock.abi_version(), "filesystem": False, "tcp": False, "scopes": False}
        problems.append(f"Landlock: {exc}")
    report["no_new_privs"] = _libc.prctl(39, 0, 0, 0, 0) == 1  # PR_GET_NO_NEW_PRIVS
    if not report["no_new_privs"]:
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        report["no_new_privs"] = _libc.prctl(39, 0, 0, 0, 0) == 1
    try:
        report["seccomp_rules"] = syscall_filter.install(os.getpid())
        report["seccomp"] = True
    except OSError as exc:
        report["seccomp"] = False
        problems.append(f"seccomp: {exc}")
    report["python"] = python
    return report
