"""The level the sandbox reached is judged, shown and enforced: below secrets-safe forgegit refuses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import make_repo

from forgegit.isolation import SECRETS_SAFE, UNSAFE, Isolation
from forgegit.scripted import ScriptedServer, text

HERE = Path(__file__).resolve().parent
SAFE_REPORT: dict[str, Any] = {
    "platform": "linux", "problems": [], "landlock": {"abi": 6, "filesystem": True, "tcp": True, "scopes": True},
    "seccomp": True, "no_new_privs": True, "capabilities": "none", "parent_death_signal": True,
    "own_uid": False, "user_namespace": True, "network_namespace": True, "disk_quota": "tmpfs",
}


def test_landlock_and_seccomp_without_capabilities_are_secrets_safe() -> None:
    iso = Isolation.from_report(SAFE_REPORT)
    assert iso.level == SECRETS_SAFE and not iso.missing
    assert iso.summary().startswith("secrets-safe (Landlock ABI 6 (+TCP, scopes), seccomp, user namespace")


def test_each_missing_guarantee_makes_the_level_unsafe_and_says_how_to_get_it() -> None:
    cases = {
        "landlock": ({"abi": 0, "filesystem": False}, "Landlock"),
        "seccomp": (False, "libseccomp"),
        "no_new_privs": (False, "no-new-privileges"),
        "capabilities": ("kept", "capabilities"),
        "parent_death_signal": (False, "forgegit's life"),
    }
    for key, (value, hint) in cases.items():
        iso = Isolation.from_report({**SAFE_REPORT, key: value})
        assert iso.level == UNSAFE and any(hint in m for m in iso.missing), (key, iso.missing)
        line = iso.refusal()
        assert "\n" not in line and "--unsafe-sandbox" in line and hint in line


def test_not_linux_is_named_as_the_reason() -> None:
    iso = Isolation.from_report({**SAFE_REPORT, "platform": "darwin", "landlock": {}, "seccomp": False})
    assert "not Linux" in iso.refusal()


def _repo(tmp_path: Path) -> Path:
    files = {
        "functions/double.py": '"""Double a number."""\n\n\ndef double(n: int) -> int:\n    """Twice n."""\n    return 2 * n\n',
        "tasks/train.jsonl": json.dumps({"id": "t1", "question": "What is 2+2?", "answer": "4"}) + "\n",
        "forgegit.toml": 'model = "scripted"\nchecker = "numeric"\n',
    }
    return make_repo(tmp_path / "repo", files)


def _eval(repo: Path, mode: str, *flags: str) -> subprocess.CompletedProcess[str]:
    with ScriptedServer(lambda request: text("Final answer: 4")) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-isolation-test",
               "PYTHONPATH": str(HERE.parent)}
        return subprocess.run(
            [sys.executable, str(HERE / "as_user.py"), mode, "--", sys.executable, "-m", "forgegit", "eval", *flags],
            cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_eval_prints_the_level_in_force(tmp_path: Path) -> None:
    proc = _eval(_repo(tmp_path), "root")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: secrets-safe (Landlock" in proc.stdout


def test_without_landlock_eval_refuses_with_one_line_naming_what_is_missing(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    proc = _eval(repo, "no-landlock")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot keep secrets safe" in lines[0] and "Landlock" in lines[0] and "--unsafe-sandbox" in lines[0]
    notes = subprocess.run(["git", "notes", "--ref=forgegit", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert notes.strip() == ""  # nothing was recorded as a result


def test_unsafe_sandbox_runs_anyway_and_says_so(tmp_path: Path) -> None:
    proc = _eval(_repo(tmp_path), "no-landlock", "--unsafe-sandbox")
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: WARNING, running function code unsafely as asked: unsafe" in proc.stderr


PEEK = """
import os, subprocess, sys
from forgegit.isolation import protect_host
if sys.argv[1] == "protect":
    assert protect_host()
child = subprocess.run([sys.executable, "-c", f"print(open('/proc/{os.getpid()}/environ').read())"],
                       capture_output=True, text=True)
print("READ" if "sk-host-secret" in child.stdout else "DENIED")
"""


def test_another_process_of_the_same_user_cannot_read_forgegits_environment() -> None:
    """protect_host() makes forgegit non-dumpable: even outside the sandbox, a same-uid process cannot
    read its /proc/<pid>/environ (the control run, unprotected, shows the read would work)."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OPENAI_API_KEY": "sk-host-secret"}
    seen = {}
    for how in ("protect", "control"):
        proc = subprocess.run([sys.executable, str(HERE / "as_user.py"), "user", "--", sys.executable, "-c", PEEK, how],
                              env=env, cwd="/", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        seen[how] = proc.stdout.strip()
    assert seen == {"protect": "DENIED", "control": "READ"}


def test_unsafe_sandbox_training_still_validates_and_keeps_good_edits(tmp_path: Path) -> None:
    """--unsafe-sandbox reaches the optimizer's import check too: the demo's good first edit is accepted
    and kept on a kernel without Landlock, instead of being rejected because the check's sandbox refused."""
    from forgegit import demo, history

    repo = demo.make_repo(tmp_path / "demo")
    with ScriptedServer(demo.make_script()) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-isolation-test",
               "PYTHONPATH": str(HERE.parent)}
        proc = subprocess.run(
            [sys.executable, str(HERE / "as_user.py"), "no-landlock", "--", sys.executable, "-m", "forgegit",
             "train", "--unsafe-sandbox", "--epochs", "1", "--run-id", "u1"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = history.load_run(repo, "forgegit/train/u1")
    assert [(a.kind, a.name, a.accepted) for a in run.epochs[0].actions] == [("add", "digit_sum", True)]
    assert run.epochs[0].kept and run.sandbox.startswith("unsafe")


REFUSED_RUNS_NOTHING = """
import asyncio, sys
from forgegit.isolation import SandboxRefused
from forgegit.sandbox import Sandbox
marker = sys.argv[1]
source = f"open({marker!r}, 'w').write('ran')\\n\\ndef pwn():\\n    return 1\\n".encode()
async def main():
    try:
        async with Sandbox({"pwn.py": source}) as sb:
            print("STARTED", sb.isolation.summary())
    except SandboxRefused as exc:
        print("REFUSED", exc)
asyncio.run(main())
"""


def test_a_refused_sandbox_never_runs_any_function_code(tmp_path: Path) -> None:
    """The worker reports its confinement before it is sent any function source: where forgegit refuses
    (no Landlock here), module-level code never ran, so it could neither act nor forge the report."""
    marker = tmp_path / "ran-on-import"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.run([sys.executable, str(HERE / "as_user.py"), "no-landlock", "--", sys.executable, "-c",
                           REFUSED_RUNS_NOTHING, str(marker)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("REFUSED") and "Landlock" in proc.stdout, proc.stdout + proc.stderr
    assert not marker.exists()
