"""Run a command the way forgegit runs on users' machines, from a root test process.

    python tests/as_user.py MODE -- COMMAND...

MODE is one of
- `user`: an unprivileged uid (setpriv), user namespaces allowed (ubuntu-22.04 runners, laptops);
- `user-no-userns`: the same, with user namespaces refused by a seccomp filter on unshare/clone
  (CLONE_NEWUSER), as AppArmor refuses them on ubuntu-24.04 (`ubuntu-latest`) and Docker's default
  seccomp profile does in container jobs;
- `root`: the command as it is (CI's own case);
- `container`: root without namespaces or mounts, as in a container job under Docker's default
  seccomp profile (no CAP_SYS_ADMIN): unshare, setns and mount are refused;
- `no-landlock`: the current user on a kernel without Landlock (before 5.13, or not in lsm=): the
  Landlock system calls fail with ENOSYS. Here forgegit must refuse to run function code.

The unprivileged uid comes from FORGEGIT_TEST_UID (default 65534). CI's Python may live where that
uid cannot enter (pyenv under /root): in a private mount namespace of this command only, such a
directory is covered by a tmpfs with the Python installation mounted back at the same path, which is
what the sandbox itself does for its workers (`forgegit/confine.py`). Nothing on the host changes.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_UID = int(os.environ.get("FORGEGIT_TEST_UID", "65534"))
MODES = ("root", "user", "user-no-userns", "container", "no-landlock")
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
PR_SET_NO_NEW_PRIVS = 38


def block_user_namespaces() -> None:
    """Refuse new user namespaces to this process and all it starts (what ubuntu-24.04 does)."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in ("unshare", "clone"):
        flt.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # flags in memory: make callers fall back to clone
    flt.load()


def block_namespaces_and_mounts() -> None:
    """Refuse every namespace and mount to this process and all it starts (a container job's root)."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in ("unshare", "setns", "mount", "umount2", "fsopen", "open_tree"):
        flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
    flt.load()


def hide_landlock() -> None:
    """Make this kernel look as if it had no Landlock (to this process and all it starts)."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"):
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), name)
    flt.load()


def reach_python_as(uid: int) -> None:
    """In a new mount namespace, make this Python installation reachable by uid (see the docstring)."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "forgegit"))
    import confine  # forgegit/confine.py, by path: the same code the workers use

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    confine._mount(None, "/", None, confine.MS_REC | confine.MS_PRIVATE)
    staging = os.path.join("/tmp", f"forgegit-as-user-{os.getpid()}")
    os.makedirs(staging, exist_ok=True)
    project = os.path.dirname(HERE)  # the checkout under test: its tests and (editable) forgegit package
    interpreter = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))]
    confine.reach_python([*confine.python_paths([]), *interpreter, project], staging, uid, uid)
    for entry in os.listdir(staging):  # the bind mounts were moved out: only empty directories are left
        os.rmdir(os.path.join(staging, entry))
    os.rmdir(staging)


def shared_dir(prefix: str) -> str:
    """A fresh directory every uid can enter (pytest's own temp root is private to root: a test that
    used it would see attacks fail on permissions instead of on the sandbox). The caller removes it."""
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def chown_tree(path: str | os.PathLike[str], uid: int = TEST_UID) -> None:
    """Give a directory tree to uid: the files of the user forgegit runs as in the unprivileged modes."""
    os.chown(path, uid, uid)
    for d, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(d, name), uid, uid, follow_symlinks=False)


def main(argv: list[str]) -> None:
    mode, sep, command = argv[0], argv[1], argv[2:]
    assert mode in MODES and sep == "--" and command, __doc__
    if mode == "root":
        os.execvp(command[0], command)
    if mode in ("container", "no-landlock"):
        block_namespaces_and_mounts() if mode == "container" else hide_landlock()
        os.execvp(command[0], command)
    uid = TEST_UID
    if os.geteuid() == 0:
        reach_python_as(uid)
    if mode == "user-no-userns":
        block_user_namespaces()  # sets no-new-privileges as libseccomp requires; setpriv works under it
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--", *command]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
