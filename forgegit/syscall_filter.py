"""The sandbox worker's seccomp filter: system calls untrusted code never needs are refused with EPERM.

Built with libseccomp through `pyseccomp` (ctypes bindings, API-compatible with libseccomp's own
Python module), so the BPF program, the architecture check and syscall numbers come from the
library made for the job rather than from hand-assembled BPF. Loaded into the worker by file path,
after Landlock and before any untrusted code runs; the filter holds for the process's life.

What it refuses (defence in depth beside Landlock, and the only guard for what Landlock cannot see):
- other processes: ptrace, process_vm_*, pidfd_getfd, kcmp, and signals, priorities, limits or
  memory policy aimed at any process but the worker itself;
- new processes: fork, vfork, clone without CLONE_THREAD, clone3 (ENOSYS, so threads fall back to
  clone), execve (threads stay allowed: the memory limit then bounds the whole worker);
- the network: socket() of every family, connect/bind/listen/accept, sendto() with an address;
  socketpair stays for AF_UNIX stream pairs only (asyncio's self-pipe); io_uring (which can open
  sockets and files behind seccomp's back);
- memory and channels outside the limits: System V shared memory, message queues and semaphores,
  memfd_create (memory RLIMIT_AS does not count), inotify/fanotify (names of files appearing in
  directories it cannot read); and prctl(PR_SET_PDEATHSIG), so it cannot outlive forgegit;
- mounts and namespaces: mount and the new mount API, umount, pivot_root, chroot, unshare, setns;
- kernel attack surface: bpf, perf_event_open, userfaultfd, keyctl/add_key/request_key, modules,
  kexec, reboot, swap, quotactl, syslog, handles (open_by_handle_at).
"""
from __future__ import annotations

import errno

CLONE_THREAD = 0x00010000
AF_UNIX = 1
SOCK_TYPE_MASK = 0xF
SOCKET_TYPES_REFUSED = (2, 3, 4, 5, 10)  # DGRAM, RAW, RDM, SEQPACKET, PACKET: only stream pairs remain
PR_SET_PDEATHSIG = 1

REFUSED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    "pidfd_send_signal", "tkill",
    "fork", "vfork", "execve", "execveat",
    "socket", "connect", "bind", "listen", "accept", "accept4", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semctl",
    "semtimedop", "memfd_create", "memfd_secret", "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_mark",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "quotactl", "syslog", "acct", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "lookup_dcookie", "iopl", "ioperm", "vhangup", "uselib",
    "migrate_pages", "move_pages", "ioprio_set", "setpriority",
)
# Signals: refused unless aimed at the worker's own pid (its first argument).
SIGNAL_SELF = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# Calls on a process: refused unless their first argument is 0, "this process" (what libc passes).
CALLER_ONLY = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr", "get_robust_list")

class SeccompUnavailable(OSError):
    """libseccomp (or its Python binding) is missing, or the kernel refused the filter."""


def install(pid: int) -> int:
    """Load the filter into the calling thread (and its future threads) for good; how many rules it holds."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:  # pyseccomp raises OSError-like errors when libseccomp.so.2 is absent
        raise SeccompUnavailable(f"libseccomp is not installed (install libseccomp2): {exc}") from exc
    deny = seccomp.ERRNO(errno.EPERM)
    rules = 0
    try:
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        try:  # a binary tree of system call numbers instead of a list: fewer BPF steps per call
            flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        except OSError:
            pass  # libseccomp before 2.5: the list works too
        for name in REFUSED:
            rules += _add(flt, deny, name)
        # clone: only threads. (arg0 & CLONE_THREAD) == 0 means a new process.
        rules += _add(flt, deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
        rules += _add(flt, seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags sit in memory: make libc use clone
        rules += _add(flt, deny, "socketpair", seccomp.Arg(0, seccomp.NE, AF_UNIX))
        for kind in SOCKET_TYPES_REFUSED:  # a datagram pair could sendto() any UNIX socket path
            rules += _add(flt, deny, "socketpair", seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, kind))
        rules += _add(flt, deny, "sendto", seccomp.Arg(4, seccomp.NE, 0))  # an explicit destination address
        rules += _add(flt, deny, "prctl", seccomp.Arg(0, seccomp.EQ, PR_SET_PDEATHSIG))  # must die with forgegit
        for name in SIGNAL_SELF:
            rules += _add(flt, deny, name, seccomp.Arg(0, seccomp.NE, pid))
        for name in CALLER_ONLY:
            rules += _add(flt, deny, name, seccomp.Arg(0, seccomp.NE, 0))
        flt.load()
    except OSError as exc:
        raise SeccompUnavailable(f"the seccomp filter could not be loaded: {exc}") from exc
    return rules


def _add(flt: object, action: int, name: str, *args: object) -> int:
    """Add one rule; a system call this architecture does not have needs none. Any other error raises."""
    import pyseccomp as seccomp

    if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
        return 0
    flt.add_rule(action, name, *args)  # type: ignore[attr-defined]
    return 1
