"""The sandbox holds where forgegit really runs: every attack of issue 11, in three modes.

Each mode runs tests/sandbox_attacks.py (a process with secrets that hosts a real Sandbox) through
tests/as_user.py: as root (CI), as an unprivileged uid with user namespaces allowed (ubuntu-22.04,
laptops) and with them refused (ubuntu-24.04), and as a container job's root (no namespaces, no mounts). The assets are laid out as on a runner:
credentials in HOME, a token in the checkout's .git/config, the response cache, RUNNER_TEMP and the
GITHUB_ENV file; TMPDIR lies under HOME and the command runs from a sub-directory of the checkout.
A test fails when its attack works.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from as_user import TEST_UID as UID
from as_user import chown_tree, shared_dir

HERE = Path(__file__).resolve().parent
IS_ROOT = os.geteuid() == 0
MODES = ["root", "user", "user-no-userns", "container"] if IS_ROOT else ["user"]
SECRETS = {"OPENAI_API_KEY": "sk-confinement-test-0123456789", "GITHUB_TOKEN": "ghp_confinementTestToken42"}
CREDENTIALS = "https://x:gho_homeCredentials77@github.com"
GH_HOSTS = "github.com:\n    oauth_token: gho_ghCliToken88\n"
EXTRAHEADER = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX2NoZWNrb3V0VG9rZW45OQ=="
CACHED_PROMPT = "every-prompt-in-the-cache-31337"
RUNNER_SECRET = "runner-temp-secret-55"
QUESTION = "validation question: what is 6 x 7?"
ALL_SECRETS = [*SECRETS.values(), CREDENTIALS, "gho_ghCliToken88", EXTRAHEADER, CACHED_PROMPT, RUNNER_SECRET]


def userns_available() -> bool:
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except OSError:
        return False


def lay_out(base: Path) -> dict[str, Any]:
    """A runner's secrets and a checkout, owned by the user forgegit runs as."""
    home, repo, runner = base / "home", base / "repo", base / "runner"
    for d in (home / ".config" / "gh", home / "tmp", repo / "sub", repo / "functions", runner, base / "outside"):
        d.mkdir(parents=True)
    (home / ".git-credentials").write_text(CREDENTIALS + "\n")
    (home / ".config" / "gh" / "hosts.yml").write_text(GH_HOSTS)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "http.https://github.com/.extraheader", EXTRAHEADER], check=True)
    (repo / ".git" / "forgegit").mkdir()
    (repo / ".git" / "forgegit" / "cache.sqlite").write_text(CACHED_PROMPT)
    (repo / "tasks-test.jsonl").write_text(json.dumps({"question": QUESTION, "answer": "42"}) + "\n")
    (runner / "secret.txt").write_text(RUNNER_SECRET)
    github_env = runner / "github_env"
    github_env.write_text(f"SECRET={RUNNER_SECRET}\n")
    return {"home": home, "repo": repo, "runner": runner, "github_env": github_env, "outside": base / "outside"}


@pytest.fixture(scope="module", params=MODES)
def attacked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    mode: str = request.param
    base = Path(shared_dir(f"forgegit-confine-{mode}-"))
    p = lay_out(base)
    home, repo = p["home"], p["repo"]
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    unix_path = str(base / "agent.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    unix.listen(8)
    unix.setblocking(False)
    os.chmod(unix_path, 0o777)
    abstract_name = f"forgegit-test-{os.getpid()}-{mode}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen(8)
    abstract.setblocking(False)
    purelib = sysconfig.get_paths()["purelib"]
    targets = [str(repo / ".git" / "hooks" / "post-commit"), str(repo / ".github" / "workflows" / "pwn.yml"),
               str(repo / "functions" / "pwn.py"), str(repo / "sub" / "pwn.txt"), str(home / "pwn.txt"),
               os.path.join(purelib, "forgegit-pwn.pth"), str(p["outside"] / "pwn.txt"), str(p["runner"] / "pwn.txt")]
    plan = {
        "repo": str(repo),
        "args": {
            "read_files": {
                "secrets": [str(home / ".git-credentials"), str(home / ".config" / "gh" / "hosts.yml"),
                            str(repo / ".git" / "config"), str(repo / ".git" / "forgegit" / "cache.sqlite"),
                            str(repo / "tasks-test.jsonl"), str(p["runner"] / "secret.txt"), str(p["github_env"]),
                            "/etc/shadow", "/root/.bashrc", os.path.join(sys.prefix, "pyvenv.cfg")],
                "dirs": [str(home), str(repo), str(repo / "sub"), str(p["runner"]), "/proc", "/tmp"],
            },
            "write_files": {"targets": targets},
            "persist": {"question": QUESTION},
            "network": {"port": tcp.getsockname()[1], "unix": unix_path, "abstract": abstract_name},
            "unmount": {"mounts": ["/", "/proc", "/root", str(home), str(base)]},
            "signals": {"test_pid": os.getpid()},
        },
    }
    if mode.startswith("user"):
        chown_tree(base, UID)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GITHUB_", "RUNNER_"))}
    env.update(SECRETS, HOME=str(home), TMPDIR=str(home / "tmp"), RUNNER_TEMP=str(p["runner"]),
               GITHUB_ENV=str(p["github_env"]), PYTHONPATH=str(HERE.parent))
    proc = subprocess.run(
        [sys.executable, str(HERE / "as_user.py"), mode, "--", sys.executable, str(HERE / "sandbox_attacks.py"), json.dumps(plan)],
        cwd=repo / "sub", env=env, capture_output=True, text=True, timeout=300,
    )
    connections = 0
    for listener in (tcp, unix, abstract):
        while True:
            try:
                conn, _ = listener.accept()
                conn.close()
                connections += 1
            except BlockingIOError:
                break
        listener.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    yield {"mode": mode, "out": out, "targets": targets, "connections": connections, "home": home}
    shutil.rmtree(base, ignore_errors=True)


def outcome(attacked: dict[str, Any], name: str) -> str:
    """What the attack returned; it must have run to its end (an attack that crashed proves nothing)."""
    text: str = attacked["out"][name]
    if name != "fill_disk":
        assert text.startswith("ok: "), text[:500]
    return text


def test_every_mode_reaches_the_secrets_safe_level(attacked: dict[str, Any]) -> None:
    iso = attacked["out"]["isolation"]
    assert iso["level"] == "secrets-safe", iso
    mech = " ".join(iso["mechanisms"])
    assert "Landlock" in mech and "seccomp" in mech
    if attacked["mode"] == "root":
        assert "own uid" in mech
    if attacked["mode"] in ("user-no-userns", "container"):
        assert "namespace" not in mech  # the emulated ubuntu-24.04 / container really refused them  # the emulated ubuntu-24.04 really refused it
    if attacked["mode"] == "user" and userns_available():
        assert "user namespace" in mech


def test_function_code_cannot_read_forgegits_environment_or_memory(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "read_host_memory")
    assert " READ " not in text.replace("/proc/self/environ READ", "")
    for secret in SECRETS.values():
        assert secret not in text


def test_function_code_cannot_ptrace_forgegit(attacked: dict[str, Any]) -> None:
    assert "attach=-1 readv=-1" in outcome(attacked, "ptrace_host")


@pytest.mark.parametrize("via", ["read_files", "python_read_files"])
def test_no_credential_token_cache_or_sealed_split_is_readable(attacked: dict[str, Any], via: str) -> None:
    text = outcome(attacked, via)
    assert text.startswith("ok") and "READ" not in text and "LISTED" not in text, text
    for secret in [*ALL_SECRETS, QUESTION]:
        assert secret not in text


def test_function_code_cannot_write_hooks_workflows_functions_or_site_packages(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "write_files")
    assert "WROTE" not in text, text
    for target in attacked["targets"]:
        assert not os.path.exists(target), target


def test_nothing_persists_from_one_call_to_the_next(attacked: dict[str, Any]) -> None:
    assert "WROTE" not in outcome(attacked, "persist"), outcome(attacked, "persist")
    assert outcome(attacked, "recall") == "ok: nothing"
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(os.path.join(d, "forgegit-validation-notes.txt"))


def test_no_connection_of_any_kind_leaves_the_worker(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "network")
    assert "CONNECTED" not in text, text
    assert attacked["connections"] == 0


def test_function_code_cannot_start_a_daemon_or_another_program(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "daemon")
    assert "FORKED" not in text and "SPAWNED" not in text, text
    assert "exec PermissionError" in text


def test_function_code_cannot_unmount_mount_or_unshare(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "unmount")
    assert "UNMOUNTED" not in text and "MOUNTED" not in text and "UNSHARED" not in text, text


def test_function_code_cannot_signal_any_other_process(attacked: dict[str, Any]) -> None:
    assert "SIGNALLED" not in outcome(attacked, "signals"), outcome(attacked, "signals")


def test_the_disk_quota_stops_a_function_filling_the_disk(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "fill_disk")
    assert "WROTE" not in text, text
    assert text.startswith(("disk:", "ok: stopped after")), text


def test_the_memory_limit_bounds_all_threads_together(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "threads_memory")
    held = int(text.split("held ")[1].split(" MB")[0]) if "held " in text else 0
    assert held < 256, text


@pytest.mark.parametrize("mode", MODES)
def test_workers_die_with_forgegit(mode: str) -> None:
    tmp_path = Path(shared_dir("forgegit-hold-"))
    if mode.startswith("user"):
        chown_tree(tmp_path, UID)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "TMPDIR": str(tmp_path)}
    host = subprocess.Popen(
        [sys.executable, str(HERE / "as_user.py"), mode, "--", sys.executable, str(HERE / "sandbox_attacks.py"), "hold"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert host.stdout is not None
        worker = int(host.stdout.readline())
        assert Path(f"/proc/{worker}").exists()
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert not Path(f"/proc/{worker}").exists(), "a worker outlived the forgegit that started it"


def test_no_shared_memory_queue_memfd_inotify_or_datagram_channel_and_no_opting_out_of_death(attacked: dict[str, Any]) -> None:
    """System V IPC persists and crosses users, memfds escape the memory limit, inotify watches protected
    directories, a datagram socketpair reaches any UNIX socket, and PR_SET_PDEATHSIG 0 outlives forgegit."""
    text = outcome(attacked, "kernel_channels")
    assert "OPENED" not in text and "pdeathsig 1" in text, text


def test_a_directory_the_code_locks_still_counts_against_the_quota(attacked: dict[str, Any]) -> None:
    text = outcome(attacked, "locked_dir_fill") if not attacked["out"]["locked_dir_fill"].startswith("disk") else "disk"
    assert "WROTE" not in text, text


def test_a_thread_started_with_the_low_level_thread_module_gets_its_worker_recycled(attacked: dict[str, Any]) -> None:
    assert outcome(attacked, "os_thread") != outcome(attacked, "after_thread").replace("ok: ", "ok: ")
    assert outcome(attacked, "os_thread").split()[-1] != outcome(attacked, "after_thread").split()[-1]
