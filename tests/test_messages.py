"""Every message a user reads is right: progress lines, configuration mistakes, retries, `--by`,
`log --all --json`, one error style, and what `train --merge` and `eval` say (issue 14, items 6-13).

The real command line in a subprocess (`python -m forgegit ...`), the scripted model on loopback.
"""
from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest

from conftest import git

from forgegit import demo
from forgegit.cli import COMMANDS, cli
from forgegit.scripted import text, tool_calls

README = Path(__file__).resolve().parent.parent / "README.md"


def forgegit(cwd: Path, *args: str, server: Any = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FORGEGIT_RETRY_BACKOFF": "0.01", **(env or {})}
    if server is not None:
        full.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    else:
        full.setdefault("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    return subprocess.run([sys.executable, "-m", "forgegit", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def one_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Failed with exactly one stderr line, `forgegit: error: ...`, holding every needle; stdout empty."""
    assert proc.returncode not in (0, None), proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: "), proc.stderr
    assert "Error:" not in proc.stderr.replace("forgegit: error:", "") and not proc.stdout.strip(), proc.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def useless_optimizer(request: dict[str, Any]) -> Any:
    if request["model"] == demo.OPTIMIZER_MODEL:
        if any(m["role"] == "tool" for m in request["messages"]):
            return text("ok")
        return tool_calls(("add_function", {"name": "word_count", "code": demo.WORD_COUNT}), content="Add a counter.")
    return demo.agent_reply(request)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return demo.make_repo(tmp_path / "repo")


# ------------------------------------------------------------------ item 6


def run_with_stderr_on_a_pty(cwd: Path, args: list[str], env: dict[str, str]) -> tuple[str, str, int]:
    """Run forgegit with stderr on a pseudo-terminal (as in an interactive shell), stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "forgegit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(timeout=60)
    return seen.decode(errors="replace"), out, proc.returncode


def test_train_shows_one_progress_line_per_evaluation_with_an_eta_on_a_terminal_only(
        repo: Path, scripted: Any) -> None:
    """On a terminal, each evaluation of `train` gets its own progress line counting from 0/12 to
    12/12, its passes never more than its tasks done, with an ETA; piped, stderr holds no bar."""
    server = scripted(useless_optimizer, latency=0.12)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test", COLUMNS="150")
    err, out, code = run_with_stderr_on_a_pty(repo, ["train", "--run-id", "p1", "--patience", "1"], env)
    assert code == 0, err + out
    bars = [line for line in re.split(r"[\r\n]", re.sub(r"\x1b\[\?25[lh]", "", err)) if "passed," in line]
    runs: list[list[tuple[int, int, int]]] = []
    for line in bars:
        m = re.search(r"\]\s+(\d+)/(\d+)\s+(\d+) passed", line)
        assert m, line
        done, total, passed = map(int, m.groups())
        if done == 0 or not runs:
            runs.append([])
        runs[-1].append((done, total, passed))
    assert len(runs) >= 2  # the baseline and epoch 1's gate, each on a line of its own
    for steps in runs:
        assert steps[0][0] == 0 and steps[-1][0] == steps[-1][1] == len(demo.TASKS)
        assert all(passed <= done for done, _, passed in steps)
        assert [d for d, _, _ in steps] == sorted(d for d, _, _ in steps)
    assert any(re.search(r"tokens, eta \d+s$", line) for line in bars)  # the time left
    assert "passed," not in out
    piped = forgegit(repo, "train", "--run-id", "p2", "--patience", "1", server=server, env={"CI": ""})
    assert piped.returncode == 0 and "passed," not in piped.stderr and "[#" not in piped.stderr


# ------------------------------------------------------------------ item 7


def test_a_base_url_without_a_scheme_fails_at_once(repo: Path) -> None:
    """`OPENAI_BASE_URL=localhost:11434` fails in well under a second of retrying, naming the fix."""
    start = time.monotonic()
    proc = forgegit(repo, "eval", env={"OPENAI_BASE_URL": "localhost:11434", "FORGEGIT_RETRY_BACKOFF": "1"})
    assert time.monotonic() - start < 20  # the 1 s back-off doubling 5 times would take 31 s
    one_error(proc, "OPENAI_BASE_URL='localhost:11434'", "http://localhost:11434")
    for bad in ("http://", "ftp://host/v1", "http://host:notaport/v1"):
        one_error(forgegit(repo, "eval", env={"OPENAI_BASE_URL": bad}), "OPENAI_BASE_URL", "not an http(s) URL")


def test_each_retry_says_one_line_with_its_delay_and_reason(repo: Path) -> None:
    """A refused connection is retried with one `forgegit: retrying in ...: connection refused` line
    per retry (not once per concurrent task, not silently), then one error line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    proc = forgegit(repo, "eval", env={"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    retries = [line for line in proc.stderr.splitlines() if line.startswith("forgegit: retrying in ")]
    assert [re.search(r"\(retry (\d) of 5\)", line).group(1) for line in retries] == ["1", "2", "3", "4", "5"], proc.stderr  # type: ignore[union-attr]
    assert all(re.match(r"forgegit: retrying in [\d.]+s: connection refused \(http://127\.0\.0\.1:\d+/v1\)", r) for r in retries)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("forgegit: error: ")]
    assert proc.returncode == 1 and len(errors) == 1 and "connection refused" in errors[0]


# ------------------------------------------------------------------ item 8


def test_a_bad_value_in_forgegit_toml_names_its_line_and_key(repo: Path) -> None:
    """`eval` and `train` on `patience = 0` at line 12 say `forgegit.toml:12: patience must be >= 1, got 0`."""
    config = repo / "forgegit.toml"
    lines = config.read_text().splitlines()
    lines = [line for line in lines if not line.startswith("patience")] + ["# mine"] * 3
    lines.insert(11, "patience = 0")
    config.write_text("\n".join(lines) + "\n")
    for command in ("eval", "train"):
        one_error(forgegit(repo, command), "forgegit.toml:12: patience must be >= 1, got 0")


# ------------------------------------------------------------------ item 10


def test_eval_by_an_unknown_field_is_refused_before_any_call_and_by_id_lists_task_ids(
        repo: Path, scripted: Any) -> None:
    """`eval --by nosuchfield` is one error naming the fields there are (no model call);
    `eval --by id` breaks the score down by task id, not into one `(none)` group."""
    server = scripted(demo.make_script())
    one_error(forgegit(repo, "eval", "--by", "nosuchfield", server=server), "--by nosuchfield", "fields: id")
    assert server.calls == 0
    proc = forgegit(repo, "eval", "--by", "id", server=server)
    assert proc.returncode == 0, proc.stderr
    assert "(none)" not in proc.stdout
    for t in demo.TASKS:
        assert re.search(rf"^  {re.escape(t['id'])}\s+[01]/1", proc.stdout, re.M), proc.stdout


# ------------------------------------------------------------------ item 11, 13 (log)


def test_log_all_json_prints_json_and_a_bad_plot_name_prints_nothing_first(repo: Path, scripted: Any) -> None:
    """`log --all --json` is a JSON list of runs; `log --plot x.jpg` refuses at once, printing no table."""
    server = scripted(useless_optimizer)
    assert forgegit(repo, "train", "--run-id", "a1", "--patience", "1", server=server).returncode == 0
    proc = forgegit(repo, "log", "--all", "--json")
    runs = json.loads(proc.stdout)
    assert [r["run_id"] for r in runs] == ["a1"] and runs[0]["status"] == "finished"
    one_error(forgegit(repo, "log", "--plot", "x.jpg"), "x.jpg", ".png or .svg")


# ------------------------------------------------------------------ item 13


@pytest.mark.parametrize("args, needle", [
    (["eval", "--nope"], "--nope"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["check", "--format", "xml"], "--format"),
    (["init", "a", "b"], "unexpected extra argument"),
    (["cache", "nosuch"], "nosuch"),
    (["log", "--plot", "curve.jpg"], "curve.jpg"),
    (["nosuchcommand"], "nosuchcommand"),
    (["demo", "--dir"], "--dir"),
    (["eval", "--config", "missing.toml"], "missing.toml"),
])
def test_every_error_has_the_one_forgegit_error_style(repo: Path, args: list[str], needle: str) -> None:
    """Usage mistakes and forgegit's own errors read alike: one `forgegit: error: ...` line, never click's `Error:`."""
    line = one_error(forgegit(repo, *args), needle)
    if args[0] != "eval" or "--config" not in args:
        assert "--help" in line  # a usage mistake says where to read the usage


def test_train_merge_says_not_merged_last_and_exits_1_when_the_gate_fails(repo: Path, scripted: Any) -> None:
    """`train --merge` whose final gate fails ends with `not merged: ...` and exit status 1, leaving main."""
    before = git(repo, "rev-parse", "main")
    proc = forgegit(repo, "train", "--run-id", "m1", "--merge", "--patience", "1", server=scripted(useless_optimizer))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("not merged: the final gate did not pass")
    assert git(repo, "rev-parse", "main") == before


def test_eval_says_when_the_working_trees_functions_differ_from_head(repo: Path, scripted: Any) -> None:
    """`eval` scores HEAD's committed functions and says so when functions/ has uncommitted changes."""
    server = scripted(demo.make_script())
    clean = forgegit(repo, "eval", server=server)
    assert clean.returncode == 0 and "differs from HEAD" not in clean.stderr
    (repo / "functions" / "digit_sum.py").write_text(demo.DIGIT_SUM)
    dirty = forgegit(repo, "eval", server=server)
    assert dirty.returncode == 0
    assert "functions/ in the working tree differs from HEAD (1 file, e.g. functions/digit_sum.py)" in dirty.stderr
    assert "commit them to score them" in dirty.stderr


def test_training_without_a_validation_set_says_the_gate_measures_fit(repo: Path, scripted: Any) -> None:
    """Without --val, `train`, `log` and the pull request say the gate measured fit, not generalization."""
    server = scripted(useless_optimizer)
    proc = forgegit(repo, "train", "--run-id", "v1", "--patience", "1", server=server)
    assert proc.returncode == 0
    assert "the final gate measures fit to the training tasks, not generalization" in proc.stderr
    assert "measured fit, not generalization" in forgegit(repo, "log", "v1").stdout
    assert "the gate measured fit to these tasks, not generalization" in forgegit(repo, "pr", "--dry-run", "v1").stdout
    (repo / "tasks" / "val.jsonl").write_text((repo / "tasks" / "train.jsonl").read_text().splitlines()[0] + "\n")
    with_val = forgegit(repo, "train", "--run-id", "v2", "--patience", "1", "--val", "tasks/val.jsonl", server=server)
    assert with_val.returncode == 0 and "not generalization" not in with_val.stderr + with_val.stdout


# ------------------------------------------------------------------ item 12


def _long_options(command: click.Command) -> set[str]:
    found = {o for p in command.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= _long_options(sub)
    return found - {"--help"}


def test_the_readme_names_exactly_the_options_each_command_takes() -> None:
    """The README's command table (and its sentence on shared options) lists every option of every
    command, and no option a command refuses (e.g. `--config` where it is not taken)."""
    readme = README.read_text()
    rows = dict(re.findall(r"^\| `forgegit (\w+)([^`]*)` \|", readme, re.M))
    assert set(rows) == set(COMMANDS)
    shared = re.search(r"`eval` and `train` also share (.*?)\.", readme, re.S)
    assert shared
    shared_options = set(re.findall(r"--[a-z][a-z-]*", shared.group(1)))
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        documented = set(re.findall(r"--[a-z][a-z-]*", rows[name])) | (shared_options if name in ("eval", "train") else set())
        assert documented == _long_options(command), (name, documented ^ _long_options(command))
