"""Landlock, the kernel's unprivileged access control: a process restricts itself and its threads.

Used by the sandbox worker (before it runs any untrusted code) to see only an allow-list of paths,
open no TCP connection (ABI 4+) and signal or reach no process outside its domain (ABI 6+).

Why hand-written ctypes and not a PyPI binding: the `landlock` package on PyPI (1.0.0.dev5) handles
only filesystem rights; it has no network rules (ABI 4) and no scopes (ABI 6), which this sandbox
relies on, and it is a development release. The kernel interface is three system calls with stable
numbers on every architecture and two small structs, documented in the kernel's
Documentation/userspace-api/landlock.rst; this module is a direct transcription of it.
Stdlib only: it is loaded into the worker by file path, before the worker confines itself.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import Iterable

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (landlock.h), by the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only rights a rule on a file may hold
# Network rights (ABI 4) and scopes (ABI 6).
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = READ_FILE | READ_DIR
WRITE = WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | REFER

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class LandlockError(OSError):
    """Landlock is missing, disabled, or refused a rule."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The Landlock ABI this kernel offers: 0 when it has none (old kernel, or not enabled at boot)."""
    version = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(version))


def unavailable_reason() -> str:
    """Why abi_version() is 0, in words a user can act on."""
    if _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)) >= 0:
        return ""
    err = ctypes.get_errno()
    release = os.uname().release
    if err == 38:  # ENOSYS
        return f"the kernel ({release}) has no Landlock: it needs Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK"
    if err == 95:  # EOPNOTSUPP
        return f"Landlock is disabled in this kernel ({release}): add landlock to the lsm= boot parameter"
    return f"Landlock is not usable here: {os.strerror(err)}"


def fs_rights(abi: int) -> int:
    """Every filesystem right this ABI can restrict."""
    return FS_BY_ABI[max(k for k in FS_BY_ABI if k <= abi)]


@dataclass
class Ruleset:
    """What a confined process may still do: read some paths, write others; no TCP, no outside signals."""

    read: list[str] = field(default_factory=list)  # files and directories it may read (and list)
    write: list[str] = field(default_factory=list)  # directories it may read, create, change and remove beneath
    devices: list[str] = field(default_factory=list)  # device files it may read and write (/dev/null)

    def enforce(self) -> dict[str, bool | int]:
        """Restrict the calling thread (and what it starts later) for good; what was enforced, by feature.

        Everything not allowed is denied: the filesystem beyond the rules, every TCP bind and connect
        (ABI 4+), signals to and abstract UNIX sockets of processes outside the domain (ABI 6+).
        Raises LandlockError when Landlock is unavailable or refuses a rule. Call it single-threaded.
        """
        abi = abi_version()
        if abi < 1:
            raise LandlockError(unavailable_reason())
        handled = fs_rights(abi)
        attr = _RulesetAttr(handled, BIND_TCP | CONNECT_TCP if abi >= 4 else 0, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        fd = _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if fd < 0:
            raise LandlockError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
        try:
            self._add_paths(fd, self.read, READ | EXECUTE, handled)
            self._add_paths(fd, self.write, READ | WRITE, handled)
            self._add_paths(fd, self.devices, READ_FILE | WRITE_FILE | TRUNCATE, handled)
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise LandlockError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
            if _libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
                raise LandlockError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(fd)
        return {"abi": abi, "filesystem": True, "tcp": abi >= 4, "scopes": abi >= 6}

    @staticmethod
    def _add_paths(ruleset: int, paths: Iterable[str], rights: int, handled: int) -> None:
        for path in dict.fromkeys(paths):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that does not exist needs no rule
            try:
                allowed = rights & handled
                if not os.path.isdir(path):
                    allowed &= FILE_RIGHTS
                rule = _PathBeneathAttr(allowed, fd)
                if _libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    err = ctypes.get_errno()
                    raise LandlockError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
