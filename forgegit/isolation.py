"""The isolation level the sandbox reached, and the fail-closed rule (host side).

A worker confines itself (`confine.py`) and reports what it got; `Isolation.from_report` judges it.
The level is **secrets-safe** when untrusted code cannot read a secret, write the repository, reach
the network, touch another process, or leave anything behind:

- Landlock enforces a filesystem allow-list (the Python installation read-only, a private work dir
  that is emptied after every call; not the repository, HOME, /tmp or /proc);
- the seccomp filter is loaded (no ptrace, no new process, no socket, no mount, no namespace);
- no-new-privileges is set, no capability is left, and the worker dies with forgegit.

Anything less is **unsafe**: `eval`, `train` and `serve` refuse to run function code then, unless the
user says `--unsafe-sandbox` (or `sandbox = "unsafe"`). The worker's environment never holds a
secret at any level (`sandbox.py` builds it from an allow-list), and the host makes itself
non-dumpable (`protect_host`), so same-user processes cannot read its memory or environment.
"""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import ForgegitError

SECRETS_SAFE, UNSAFE = "secrets-safe", "unsafe"
PR_SET_DUMPABLE = 4
UNSAFE_HINT = 'run anyway with --unsafe-sandbox (or sandbox = "unsafe" in forgegit.toml)'


class SandboxRefused(ForgegitError):
    """The sandbox cannot reach the secrets-safe level here and unsafe running was not asked for."""


@dataclass
class Isolation:
    """What a sandbox worker reached: the level, the mechanisms in force, and what is missing."""

    level: str
    mechanisms: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # why it is not secrets-safe, each with how to fix it

    @property
    def safe(self) -> bool:
        return self.level == SECRETS_SAFE

    def summary(self) -> str:
        """'secrets-safe (Landlock ABI 7, seccomp, own uid, network namespace, tmpfs disk quota)'."""
        inside = ", ".join(self.mechanisms) or "no confinement"
        text = f"{self.level} ({inside})"
        if self.missing:
            text += "; missing: " + "; ".join(self.missing)
        return text

    def refusal(self) -> str:
        """The one line `eval`, `train` and `serve` print when they refuse."""
        return f"the sandbox cannot keep secrets safe here: {'; '.join(self.missing)}; {UNSAFE_HINT}"

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> "Isolation":
        """Judge a worker's confinement report."""
        mech: list[str] = []
        missing: list[str] = []
        ll = report.get("landlock") or {}
        if ll.get("filesystem"):
            extra = [name for name, key in (("TCP", "tcp"), ("scopes", "scopes")) if ll.get(key)]
            mech.append(f"Landlock ABI {ll.get('abi')}" + (f" (+{', '.join(extra)})" if extra else ""))
        else:
            missing.append(_landlock_hint(report))
        if report.get("seccomp"):
            mech.append("seccomp")
        else:
            missing.append(_first(report, "seccomp", "seccomp is unavailable: install libseccomp2 (and the pyseccomp package)"))
        if report.get("own_uid"):
            mech.append("own uid")
        if report.get("user_namespace"):
            mech.append("user namespace")
        if report.get("network_namespace"):
            mech.append("network namespace")
        mech.append("tmpfs disk quota" if report.get("disk_quota") == "tmpfs" else "watched disk quota")
        if not report.get("no_new_privs"):
            missing.append("no-new-privileges could not be set")
        if report.get("capabilities") != "none":
            missing.append("capabilities could not be dropped")
        if not report.get("parent_death_signal"):
            missing.append("the worker cannot be tied to forgegit's life")
        return cls(UNSAFE if missing else SECRETS_SAFE, mech, missing)

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "mechanisms": self.mechanisms, "missing": self.missing}


def _first(report: dict[str, Any], prefix: str, default: str) -> str:
    for problem in report.get("problems", []):
        if str(problem).lower().startswith(prefix.lower()):
            return str(problem)
    return default


def _landlock_hint(report: dict[str, Any]) -> str:
    if report.get("platform", sys.platform) != "linux":
        return "this is not Linux: the sandbox needs Linux's Landlock and seccomp (run forgegit in a Linux VM or container)"
    return _first(report, "landlock", "Landlock is unavailable: it needs Linux 5.13 or later with landlock in the LSM list")


def unconfined(reason: str) -> Isolation:
    """The level of a sandbox whose worker could not even report (e.g. not Linux)."""
    return Isolation(UNSAFE, [], [reason])


def protect_host() -> bool:
    """Make this process non-dumpable: same-user processes can then neither read its /proc/<pid>/environ
    or memory nor ptrace it. Linux only; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
