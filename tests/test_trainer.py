"""Training end to end on real git repositories against a scripted model on loopback.

The scripted model is forgegit's demo: the agent solves digit sums only with a working
`digit_sum` function; the optimizer adds it (kept), breaks it (reverted), proposes an unsafe
name plus a useless function (rejected / reverted), and patience 2 stops the run.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git, run_outcome

from forgegit import demo, history
from forgegit.cli import cli
from forgegit.scripted import text, tool_calls
from forgegit.trainer import TrainLock

CRASH_POINTS = ["after-optimizer", "after-write", "after-commit", "after-eval", "after-note",
                "during-revert", "after-record"]


@pytest.fixture
def trained_repo(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    repo = demo.make_repo(tmp_path / "repo")
    server = scripted(demo.make_script())
    llm_env(server)
    monkeypatch.chdir(repo)
    return repo, server


def forgegit(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def train_subprocess(repo: Path, server: Any, *args: str, crash_at: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    if crash_at:
        env["FORGEGIT_TEST_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "forgegit", "train", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


outcome = run_outcome


def test_improving_epoch_is_kept_worse_one_reverted_and_patience_stops(trained_repo: Any) -> None:
    repo, _ = trained_repo
    result = forgegit("train", "--run-id", "t1")
    assert result.exit_code == 0, result.output
    run = history.load_run(repo, "forgegit/train/t1")
    assert [e.kept for e in run.epochs] == [True, False, False]
    assert run.stop_reason == "early-stop" and len(run.epochs) == 3 < run.settings["epochs"]
    subjects = git(repo, "log", "--format=%s", "main..forgegit/train/t1").splitlines()[::-1]
    assert subjects[0] == "forgegit: epoch 1: add digit_sum"
    assert subjects[1] == "forgegit: epoch 2: revise digit_sum"
    assert subjects[2].startswith("forgegit: revert epoch 2")
    # the revert restores exactly the tree the kept epoch had
    e1, e2 = run.epochs[0], run.epochs[1]
    assert git(repo, "rev-parse", f"{e2.revert}:functions") == git(repo, "rev-parse", f"{e1.commit}:functions")
    assert "Forgegit-Epoch: 1" in git(repo, "log", "-1", "--format=%B", e1.commit)
    assert run.final_gate is not None and run.final_gate.passed
    assert "functions/digit_sum.py" in git(repo, "ls-tree", "-r", "--name-only", "forgegit/train/t1")
    # the level the sandbox reached is printed and kept in the run record (the pull request shows it)
    assert run.sandbox.startswith("secrets-safe (Landlock") and f"sandbox: {run.sandbox}" in result.output


def test_invalid_proposals_never_land_and_nothing_outside_functions_is_written(trained_repo: Any) -> None:
    repo, _ = trained_repo
    assert forgegit("train", "--run-id", "t2").exit_code == 0
    run = history.load_run(repo, "forgegit/train/t2")
    rejected = [a for e in run.epochs for a in e.actions if not a.accepted]
    assert [a.name for a in rejected] == ["../.github/workflows/pwn"] and rejected[0].reason
    touched = git(repo, "log", "--format=", "--name-only", "main..forgegit/train/t2").split()
    assert touched and all(p.startswith("functions/") for p in touched)
    assert not (repo / ".github").exists()


def test_users_working_tree_and_branch_are_untouched(trained_repo: Any) -> None:
    repo, _ = trained_repo
    (repo / "functions" / "add.py").write_text((repo / "functions" / "add.py").read_text() + "# my edit\n")
    (repo / "notes.txt").write_text("untracked work\n")
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    assert forgegit("train", "--run-id", "t3").exit_code == 0
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "rev-parse", "main") == head
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == status
    assert "# my edit" in (repo / "functions" / "add.py").read_text()
    assert not (repo / "functions" / "digit_sum.py").exists()
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # the training worktree is gone


def test_merge_happens_only_when_the_final_gate_passes(trained_repo: Any) -> None:
    repo, _ = trained_repo
    before = git(repo, "rev-parse", "main")
    result = forgegit("train", "--run-id", "t4", "--merge")
    assert "merged forgegit/train/t4 into main" in result.output
    assert git(repo, "merge-base", "--is-ancestor", "forgegit/train/t4", "main") == ""
    assert (repo / "functions" / "digit_sum.py").exists() and before != git(repo, "rev-parse", "main")


def test_no_merge_when_nothing_improves(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = demo.make_repo(tmp_path / "repo")

    def script(request: dict[str, Any]) -> Any:
        if request["model"] == demo.OPTIMIZER_MODEL:
            if any(m["role"] == "tool" for m in request["messages"]):
                return text("ok")
            return tool_calls(("add_function", {"name": "word_count", "code": demo.WORD_COUNT}))
        return demo.agent_reply(request)

    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    before = git(repo, "rev-parse", "main")
    result = forgegit("train", "--run-id", "t5", "--merge", "--patience", "1")
    assert "not merged: the final gate did not pass" in result.output
    assert git(repo, "rev-parse", "main") == before
    run = history.load_run(repo, "forgegit/train/t5")
    assert run.stop_reason == "early-stop" and len(run.epochs) == 1 and not run.improved


def test_a_second_training_while_one_runs_is_refused(trained_repo: Any) -> None:
    repo, _ = trained_repo
    with TrainLock(repo, "other-run", print):  # what a running `forgegit train` holds
        result = CliRunner().invoke(cli, ["train", "--run-id", "t6"])
    assert result.exit_code != 0
    assert f"another `forgegit train` (pid {os.getpid()}, run other-run)" in str(result.exception)
    assert not git(repo, "branch", "--list", "forgegit/train/t6")


LOCK_TAKER = """
import sys, time
from pathlib import Path
from forgegit.errors import ForgegitError
from forgegit.trainer import TrainLock
repo, name, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time() - 0.2))
while time.time() < start:
    pass
try:
    with TrainLock(repo, name, lambda line: time.sleep(0.3)):  # a slow terminal while the message prints
        print("held", time.time(), flush=True)
        time.sleep(1.5)
        print("released", time.time(), flush=True)
except ForgegitError as exc:
    print("refused", exc, flush=True)
"""


@pytest.mark.faults
def test_two_trainings_started_together_over_a_stale_lock_never_both_run(tmp_path: Path, record_property: Any) -> None:
    """8 trainings start at the same instant while a dead run's lock file is still there: exactly one
    holds the lock, the others are refused with one line naming it (removing the stale file after
    reading it let several through)."""
    repo = demo.make_repo(tmp_path / "repo")
    lock = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "forgegit" / "train.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    overlaps = 0
    rounds = 3
    for _ in range(rounds):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        lock.write_text(f"{dead.pid} killed-run\n")
        start = time.time() + 6.0
        procs = [subprocess.Popen([sys.executable, "-c", LOCK_TAKER, str(repo), f"r{i}", str(start)],
                                  stdout=subprocess.PIPE, text=True) for i in range(8)]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        held = [o for o in outs if o.startswith("held")]
        spans = sorted((float(o.split()[1]), float(o.split()[3])) for o in held)
        overlaps += sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])  # held while another held it
        refused = [o for o in outs if o.startswith("refused")]
        assert len(held) + len(refused) == 8, outs
        assert all("another `forgegit train`" in o and "is running on this repository" in o for o in refused), refused
    record_property("fault", "8 trainings started at once over a stale lock (3 rounds)")
    record_property("injected", rounds)
    record_property("data_lost", overlaps)
    assert overlaps == 0, f"the lock was held by more than one training {overlaps} time(s)"
    assert not lock.exists()


def test_resume_of_a_finished_run_with_a_scored_test_split_is_refused(trained_repo: Any) -> None:
    repo, _ = trained_repo
    (repo / "tasks" / "test.jsonl").write_text("".join(
        json.dumps({"question": f"What is the sum of the digits of {n}?", "answer": str(sum(map(int, str(n))))}) + "\n"
        for n in (11, 2024, 90909)))
    assert forgegit("train", "--run-id", "t7", "--test", "tasks/test.jsonl").exit_code == 0
    run = history.load_run(repo, "forgegit/train/t7")
    assert run.test is not None and run.test.head_score == 1.0 and not run.test.passed
    result = CliRunner().invoke(cli, ["train", "--resume", "--run-id", "t7"])
    assert result.exit_code != 0 and "refusing to score it again" in str(result.exception)


def test_a_separate_validation_set_is_scored_after_each_kept_epoch(trained_repo: Any) -> None:
    repo, server = trained_repo
    val = [{"id": f"v{n}", "question": f"What is the sum of the digits of {n}?", "answer": str(sum(map(int, str(n))))}
           for n in (99999, 2024, 90909, 987654)]
    (repo / "tasks" / "val.jsonl").write_text("".join(json.dumps(t) + "\n" for t in val))
    assert forgegit("train", "--run-id", "v1", "--val", "tasks/val.jsonl").exit_code == 0
    run = history.load_run(repo, "forgegit/train/v1")
    assert run.baseline_val_score == 0.25  # only 2024 -> digital root 8 == digit sum 8
    assert [e.val_score for e in run.epochs] == [1.0, 1.0, 1.0]
    assert run.final_gate is not None and run.final_gate.head_score == 1.0


def test_a_test_split_that_overlaps_training_is_refused(trained_repo: Any) -> None:
    repo, _ = trained_repo
    (repo / "tasks" / "test.jsonl").write_text((repo / "tasks" / "train.jsonl").read_text())
    result = CliRunner().invoke(cli, ["train", "--run-id", "t11", "--test", "tasks/test.jsonl"])
    assert result.exit_code != 0 and "shares 12 question(s)" in str(result.exception)
    assert not git(repo, "branch", "--list", "forgegit/train/t11")


def test_sealed_test_questions_never_reach_the_optimizer(tmp_path: Path, scripted: Any, llm_env: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = demo.make_repo(tmp_path / "repo")
    sealed = [{"id": "sealed-1", "question": "What is the sum of the digits of 424242?", "answer": "18"}]
    (repo / "tasks" / "test.jsonl").write_text("".join(json.dumps(t) + "\n" for t in sealed))
    server = scripted(demo.make_script())
    llm_env(server)
    monkeypatch.chdir(repo)
    assert forgegit("train", "--run-id", "t8", "--test", "tasks/test.jsonl").exit_code == 0
    optimizer_requests = [json.dumps(r) for r in server.requests if r["model"] == demo.OPTIMIZER_MODEL]
    assert optimizer_requests and not any("424242" in r or "sealed-1" in r for r in optimizer_requests)
    assert any("424242" in json.dumps(r) for r in server.requests if r["model"] == demo.AGENT_MODEL)


def test_log_shows_the_learning_curve_and_json(trained_repo: Any) -> None:
    repo, _ = trained_repo
    forgegit("train", "--run-id", "t9")
    out = forgegit("log").output
    assert "kept" in out and "reverted" in out and "+digit_sum" in out
    data = json.loads(forgegit("log", "--json").output)
    assert [e["kept"] for e in data["epochs"]] == [True, False, False]
    # validation is the training set here: the curve's val score follows the branch (reverts restore it)
    assert data["baseline_val_score"] == data["baseline_score"]
    assert [e["val_score"] for e in data["epochs"]] == [1.0, 1.0, 1.0]
    assert forgegit("log", "--plot", str(repo / "curve.png")).exit_code == 0
    assert (repo / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_budget_stops_training_cleanly(trained_repo: Any) -> None:
    repo, _ = trained_repo
    result = forgegit("train", "--run-id", "t10", "--budget-tokens", "1")
    assert result.exit_code == 0
    run = history.load_run(repo, "forgegit/train/t10")
    assert run.stop_reason == "budget" and run.epochs == [] and run.status == "finished"


@pytest.mark.faults
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_any_step_resume_finishes_with_the_uninterrupted_result(tmp_path: Path, scripted: Any, point: str) -> None:
    server = scripted(demo.make_script())
    reference_repo = demo.make_repo(tmp_path / "reference")
    assert train_subprocess(reference_repo, server, "--run-id", "r").returncode == 0
    expected = outcome(reference_repo, "forgegit/train/r")

    repo = demo.make_repo(tmp_path / "repo")
    main_before = git(repo, "rev-parse", "main")
    killed = train_subprocess(repo, server, "--run-id", "r", crash_at=point)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    # Nothing of the user's is touched, and the branch holds only whole, recorded epochs.
    assert git(repo, "rev-parse", "main") == main_before and git(repo, "status", "--porcelain") == ""
    run = history.load_run(repo, "forgegit/train/r")
    ends = {e.end for e in run.epochs} | {run.base_commit}
    assert git(repo, "rev-parse", "forgegit/train/r") in ends or point == "after-record"

    resumed = train_subprocess(repo, server, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "removed a stale training lock" in resumed.stdout
    assert outcome(repo, "forgegit/train/r") == expected
    assert git(repo, "rev-parse", "main") == main_before
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_no_cache_training_still_evaluates_each_tree_once_per_run(trained_repo: Any) -> None:
    """--no-cache ignores earlier runs, not this run's own results: no commit is evaluated twice."""
    repo, server = trained_repo
    assert forgegit("train", "--run-id", "nc", "--no-cache").exit_code == 0
    agent_calls = sum(r["model"] == demo.AGENT_MODEL for r in server.requests)
    trees = {git(repo, "rev-parse", f"{c}:functions") for c in git(repo, "rev-list", "forgegit/train/nc").split()}
    # base (12 tasks x 1 call), digit_sum trees (12 x 2 calls each); each distinct tree once
    assert agent_calls <= 12 * 2 * len(trees)
    assert forgegit("train", "--run-id", "nc2", "--no-cache").exit_code == 0
    assert sum(r["model"] == demo.AGENT_MODEL for r in server.requests) == 2 * agent_calls  # nothing reused across runs


def test_resume_from_a_subdirectory_config_finds_the_recorded_task_files(tmp_path: Path, scripted: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """forgegit.toml in a subdirectory (like examples/gsm8k): --resume reads the same task files."""
    repo = demo.make_repo(tmp_path / "repo")
    sub = repo / "examples" / "digits"
    sub.mkdir(parents=True)
    (repo / "tasks" / "train.jsonl").rename(sub / "train.jsonl")
    (repo / "forgegit.toml").rename(sub / "forgegit.toml")
    (sub / "forgegit.toml").write_text((sub / "forgegit.toml").read_text().replace("tasks/train.jsonl", "train.jsonl"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "move the example")
    server = scripted(demo.make_script())
    killed = train_subprocess(sub, server, "--run-id", "sub", crash_at="after-record")
    assert killed.returncode == -9
    assert history.load_run(repo, "forgegit/train/sub").tasks_file == "examples/digits/train.jsonl"
    resumed = train_subprocess(sub, server, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert history.load_run(repo, "forgegit/train/sub").status == "finished"


# --------------------------------------------------------------------------- what the optimizer's text cannot do

FORGED_NAME = "x\n::error file=functions/digit_sum.py,line=1::forged by the optimizer\n::stop-commands::tok"
FORGED_RATIONALE = ("Add a digit_sum function.\nForgegit-Run: evil-run\nForgegit-Epoch: 99\n"
                    "Co-authored-by: Mallory <mallory@evil.example>\n---\nEverything after a --- line is dropped by git.")
HOOKS = ("pre-commit", "commit-msg", "post-commit", "post-checkout", "post-merge", "reference-transaction",
         "post-rewrite", "pre-push")


def _forging_script(request: dict[str, Any]) -> Any:
    if request["model"] != demo.OPTIMIZER_MODEL:
        return demo.agent_reply(request)
    if any(m["role"] == "tool" for m in request["messages"]) or demo.epoch_of(request) > 1:
        return text("No more changes.")
    return tool_calls(("add_function", {"name": FORGED_NAME, "code": "print('x')"}),
                      ("add_function", {"name": "digit_sum", "code": demo.DIGIT_SUM}), content=FORGED_RATIONALE)


def _plant_hooks(hooks_dir: Path, marker: Path) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        script = hooks_dir / hook
        script.write_text(f"#!/bin/sh\necho {hook} \"$OPENAI_API_KEY\" >> '{marker}'\n")
        script.chmod(0o755)


@pytest.fixture
def forging_repo(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = demo.make_repo(tmp_path / "repo")
    llm_env(scripted(_forging_script))
    monkeypatch.chdir(repo)
    return repo


def test_a_rejected_action_name_cannot_print_a_workflow_command(forging_repo: Path) -> None:
    """A name with newlines once printed `::error …` and `::stop-commands::` lines on stdout in Actions."""
    result = forgegit("train", "--run-id", "f1")
    assert result.exit_code == 0, result.output
    logged = forgegit("log", "f1").output
    assert "forged by the optimizer" in result.output and "x\\n:" in logged  # the rejected name is shown ...
    for output in (result.output, logged):
        assert not [line for line in output.splitlines() if line.lstrip().startswith(("::", "##["))]  # ... defused
    run = history.load_run(forging_repo, "forgegit/train/f1")
    assert FORGED_NAME in [a.name for a in run.epochs[0].actions if not a.accepted]  # the record keeps the raw text


def test_the_rationale_cannot_forge_or_drop_the_commit_trailers(forging_repo: Path) -> None:
    """`Forgegit-Run:` in a rationale once dropped the real trailer; git must read only forgegit's own."""
    assert forgegit("train", "--run-id", "f2").exit_code == 0
    commit = history.load_run(forging_repo, "forgegit/train/f2").epochs[0].commit
    assert commit

    def trailer(key: str) -> list[str]:
        return git(forging_repo, "log", "-1", f"--format=%(trailers:key={key},valueonly)", commit).splitlines()

    assert trailer("Forgegit-Run") == ["f2"]
    assert trailer("Forgegit-Epoch") == ["1"]
    assert trailer("Forgegit-Actions") == ["add:digit_sum"]
    assert trailer("Co-authored-by") == [f"{demo.OPTIMIZER_MODEL} <forgegit@users.noreply.github.com>"]
    body = git(forging_repo, "log", "-1", "--format=%B", commit)
    assert "Everything after a --- line" in body  # the rationale is kept, defused
    assert not [line for line in body.splitlines()[1:-4] if line.startswith(("Forgegit-", "Co-authored-by", "---"))]


def test_training_runs_no_git_hook_planted_in_the_repository(forging_repo: Path) -> None:
    """Function code that wrote .git/hooks/post-commit got it run by the trainer, with the API key in its
    environment (`--no-verify` does not skip post-commit); no git command forgegit runs may run a hook."""
    marker = forging_repo.parent / "hooks-ran"
    _plant_hooks(forging_repo / ".git" / "hooks", marker)
    result = forgegit("train", "--run-id", "f3", "--merge")
    assert result.exit_code == 0, result.output
    assert "merged forgegit/train/f3 into main" in result.output  # commits, checkouts, reverts and a merge ran
    assert not marker.exists(), marker.read_text()


def test_a_ctrl_c_whose_cancellation_is_swallowed_still_stops_the_run_at_its_next_step(
        tmp_path: Path, scripted: Any, llm_env: Any) -> None:
    """Ctrl-C flags the trainer as well as cancelling its task: if a library on the way swallows the
    cancellation (seen once: the run went on and exited 0), the run still stops before its next evaluation,
    says how to resume, and the resumed run ends as an uninterrupted one."""
    from forgegit.evaluation import Evaluator
    from forgegit.trainer import Trainer
    from forgegit.workspace import Workspace

    inner = demo.make_script()
    reference_server = scripted(inner)
    reference = demo.make_repo(tmp_path / "reference")
    assert train_subprocess(reference, reference_server, "--run-id", "r").returncode == 0
    expected = outcome(reference, "forgegit/train/r")

    holder: dict[str, Trainer] = {}

    def swallowing(r: Any) -> Any:
        if r.get("model") == demo.OPTIMIZER_MODEL and not holder["trainer"].interrupted:
            holder["trainer"].interrupt()  # the flag alone: the task itself is never cancelled
        return inner(r)

    server = scripted(swallowing)
    llm_env(server)
    repo = demo.make_repo(tmp_path / "repo")
    ws = Workspace.open(repo)
    tasks = ws.task_set(ws.settings.tasks)
    said: list[str] = []
    trainer = Trainer(ws, tasks, tasks, None, Evaluator(ws.root, ws.settings, ws.llm()), ws.llm(optimizer=True),
                      echo=said.append)
    holder["trainer"] = trainer
    trainer.start(None, "r")
    try:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(trainer.train())
    finally:
        trainer.close()
    assert said[-1] == "interrupted: continue with `forgegit train --resume --run-id r`", said
    assert history.load_run(repo, "forgegit/train/r").epochs == []  # stopped before the proposal was scored
    resumed = train_subprocess(repo, server, "--resume", "--run-id", "r")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert outcome(repo, "forgegit/train/r") == expected
